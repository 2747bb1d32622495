"""Users an IdP provisioned through SCIM, who never signed in, count in a policy dry run and the access matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.dev import DEV_POLICY
from tests.flows.test_scim_helpers import GROUP_SCHEMA, Scim, okta_user, scim_settings


def dana_user(state, scim_id: str) -> str:
    from broker.storage.models import ScimUser

    with state.database.sessions() as session:
        return session.get(ScimUser, scim_id).user_id


@pytest.fixture
def settings(make_settings):
    return scim_settings(make_settings)


async def test_a_provisioned_user_who_never_signed_in_gains_access_in_the_dry_run(client, state, cli, capsys,
                                                                                 tmp_path: Path) -> None:
    scim = Scim(client)
    dana = (await scim.post("/Users", okta_user("dana@example.com", "dana"))).json()["id"]
    created = await scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "finance",
                                          "members": [{"value": dana}]})
    assert created.status_code == 201, created.text
    path = tmp_path / "policy.toml"
    path.write_text(DEV_POLICY.replace('groups = ["engineering"]', 'groups = ["engineering", "finance"]'))
    assert cli(["policy", "import", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "group finance gains demo: +tools:call +tools:read" in out
    assert f"{dana_user(state, dana)} gains demo: +tools:call +tools:read" in out  # no email: SCIM vouches for none
    assert "1 change(s) for the 1 known users" in out
    assert cli(["policy", "matrix", "--user", "dana", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["rows"]
    assert row["label"] == "Dana Anders" and row["cells"][0]["state"] == "none"
