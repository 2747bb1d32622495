"""Alembic environment. The broker passes its engine in ``config.attributes["engine"]``;
for authoring migrations by hand, set BROKER_DATABASE__URL and run
``alembic -c migrations/alembic.ini revision --autogenerate -m "..."``."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import Engine, inspect

from broker.storage.db import make_engine
from broker.storage.models import Base
from broker.storage.schema import record_support

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine: Engine | None = config.attributes.get("engine")
    if engine is not None:
        return engine
    url = os.environ.get("BROKER_DATABASE__URL")
    if not url:
        raise SystemExit("set BROKER_DATABASE__URL to the database to migrate")
    return make_engine(url)


def run_migrations_offline() -> None:
    context.configure(url=os.environ["BROKER_DATABASE__URL"], target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _record_support(ctx: MigrationContext, step: MigrationInfo, heads: Collection[str],
                    run_args: Mapping[str, Any]) -> None:
    """After each step, in its transaction: the oldest code revision the schema now supports (the
    revision's ``compatible_with``, or the revision itself), for releases that do not know it."""
    if len(heads) != 1 or not inspect(ctx.connection).has_table("schema_support"):
        return
    [revision] = heads
    script = context.script.get_revision(revision)
    assert ctx.connection is not None and script is not None  # online, at a revision of this script directory
    record_support(ctx.connection, getattr(script.module, "compatible_with", revision))


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite",
                          # alembic takes a sequence of callbacks here (util.to_tuple); its annotation names one
                          on_version_apply=(_record_support, *config.attributes.get("on_version_apply", ())))  # type: ignore[arg-type]
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
