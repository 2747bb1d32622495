"""Every column holding a value sealed under the key-encryption key is known to ``broker keys rewrap``."""

from __future__ import annotations

from broker.admin.rewrap import BOUND_TO
from broker.storage import sealed
from broker.storage.models import Base


def test_every_encrypted_column_is_rewrapped() -> None:
    encrypted = {(table.name, column.name) for table in Base.metadata.tables.values() for column in table.columns
                 if column.name.endswith("_encrypted")}
    assert encrypted == {(s.table.name, s.blob) for s in sealed.SEALED}
    assert set(BOUND_TO) == {s.kind for s in sealed.SEALED}
