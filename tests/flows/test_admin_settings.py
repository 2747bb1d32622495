"""The console's Settings page: each effective value with its source and default; secrets never shown."""

from __future__ import annotations

import re

import httpx

from tests.conftest import TESTIDP_CLIENT
from tests.flows import test_admin_console as console

settings, carol = console.settings, console.carol  # the console's users and roles, and carol signed in


def row(page: str, key: str) -> str:
    return re.search(rf'<tr id="setting-{re.escape(key)}"[^>]*>(.*?)</tr>', page, re.S).group(1)


async def test_settings_show_value_source_and_default(carol: httpx.AsyncClient, state) -> None:
    page = (await carol.get("/admin/settings")).text
    groups = row(page, "admin.admin_groups")
    assert "[&#34;it-admins&#34;]" in groups and "broker dev" in groups and "<code class=\"hint\">[]</code>" in groups
    lifetime = row(page, "tokens.access_token_lifetime")
    assert "<code>300</code>" in lifetime and ">default<" in lifetime and ">same<" in lifetime
    assert '<tr id="setting-admin.admin_groups" class="differs">' in page


async def test_secrets_are_masked_and_only_differing_values_on_demand(carol: httpx.AsyncClient, state) -> None:
    page = (await carol.get("/admin/settings")).text
    kek = state.settings.keys.key_encryption_key.get_secret_value()
    assert kek not in page and "carol-pw" not in page and TESTIDP_CLIENT["client_secret"] not in page
    assert "<code>**********</code>" in row(page, "keys.key_encryption_key")
    changed = (await carol.get("/admin/settings", params={"changed": "1"})).text
    assert 'id="setting-admin.admin_groups"' in changed and 'id="setting-tokens.access_token_lifetime"' not in changed
    assert kek not in changed

