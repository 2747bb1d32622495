"""Alembic environment. The broker passes its engine in ``config.attributes["engine"]``;
for authoring migrations by hand, set BROKER_DATABASE__URL and run
``alembic -c migrations/alembic.ini revision --autogenerate -m "..."``."""

from __future__ import annotations

import os

from alembic import context

from broker.storage.db import make_engine
from broker.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _engine():
    engine = config.attributes.get("engine")
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


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
