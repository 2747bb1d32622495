"""The console's Access page and simulator: the matrix with filters, paging and CSV, and people not known yet."""

from __future__ import annotations

import csv
import io
import re

import httpx
import pytest

from broker.registry import policies
from tests.flows import test_admin_console as console
from tests.flows.test_access_matrix import CRM, POLICY

settings, carol = console.settings, console.carol  # the console's users and roles, and carol signed in


@pytest.fixture
def sales_policy(state) -> None:
    from broker.registry import admin as registry_admin

    with state.database.transaction() as session:
        registry_admin.add(session, CRM)
        policies.import_policy(session, POLICY, issuer=state.settings.issuer, author="test")


async def test_access_page_shows_scopes_and_rules_with_denials_marked(sales_policy, carol: httpx.AsyncClient) -> None:
    page = await carol.get("/admin/access")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    text = page.text
    assert '<td class="cell denied" data-server="crm">' in text and 'href="/admin/policies#rule-interns-no-crm"' in text
    assert '<td class="cell allowed" data-server="demo">' in text and "<code>tools:call</code>" in text
    assert '<td class="cell none" data-server="demo">' in text  # everyone: no rule allows
    assert "<script" not in text and "style=" not in text


async def test_access_page_filters_and_adds_users_on_demand(sales_policy, carol: httpx.AsyncClient) -> None:
    page = await carol.get("/admin/access", params={"server": "crm", "group": "sal", "user": "carol"})
    assert page.status_code == 200
    assert 'data-server="demo"' not in page.text and "<span class=\"kind\">group</span> sales" in page.text
    assert "interns" not in page.text.split('id="matrix"')[1]
    assert "Carol Chen &lt;carol@example.com&gt;" in page.text  # carol signed in: a known user


async def test_access_csv_export_follows_the_filter(sales_policy, carol: httpx.AsyncClient) -> None:
    exported = await carol.get("/admin/access.csv", params={"server": "crm"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0][0] == "kind" and {row[2] for row in rows[1:]} == {"crm"}
    assert ["group", "interns", "crm", "denied", "", "", "interns-no-crm", "", ""] in rows


async def test_csv_cells_cannot_become_spreadsheet_formulas(sales_policy, carol: httpx.AsyncClient, state) -> None:
    from sqlalchemy import select

    from broker.storage.models import User

    with state.database.transaction() as session:
        session.scalars(select(User)).one().display_name = "=HYPERLINK(\"https://evil.example\")"
    exported = await carol.get("/admin/access.csv", params={"user": "carol", "group": "-"})
    assert "'=HYPERLINK" in exported.text and "\n=HYPERLINK" not in exported.text


async def test_signed_out_visitors_get_no_matrix(sales_policy, client: httpx.AsyncClient) -> None:
    assert (await client.get("/admin/access.csv")).status_code == 302
    assert (await client.get("/admin/access")).status_code == 302


async def test_simulator_answers_for_a_person_not_known_yet(sales_policy, carol: httpx.AsyncClient) -> None:
    page = await carol.get("/admin/policies/simulate", params={
        "server": "crm", "groups": "sales", "claims": "employee_type=contractor", "idp": "test"})
    assert page.status_code == 200 and "<strong>Allowed</strong>" in page.text
    assert "allowed by sales-crm" in page.text and "A person in sales" in page.text
    both = await carol.get("/admin/policies/simulate", params={"server": "crm", "groups": "sales",
                                                              "user": "carol@example.com"})
    assert 'id="sim-error"' in both.text and "not both" in both.text
    bad = await carol.get("/admin/policies/simulate", params={"server": "crm", "claims": "nonsense"})
    assert 'id="sim-error"' in bad.text and "name=value" in bad.text


async def test_access_page_pages_through_many_groups(sales_policy, carol: httpx.AsyncClient, state) -> None:
    from sqlalchemy import select

    from broker.storage import users
    from broker.storage.models import User

    with state.database.transaction() as session:
        carol_id = session.scalars(select(User.id)).one()
        users.set_groups(session, carol_id, "idp:test", [f"team-{n:03d}" for n in range(150)])
    first = (await carol.get("/admin/access")).text
    assert first.count('<th scope="row"') == 100 and 'id="next-page"' in first
    total = int(re.search(r"(\d+) subject\(s\)", first).group(1))
    second = (await carol.get("/admin/access", params={"page": "2"})).text
    assert second.count('<th scope="row"') == total - 100 and 'id="next-page"' not in second
    assert "team-149" in second and "team-149" not in first
