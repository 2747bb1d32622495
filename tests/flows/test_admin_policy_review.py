"""Policy changes in the console are reviewed before they apply: the dry run's page carries the only Apply,
bound to the exact document and the version in force; rules are a table with the TOML one click away."""

from __future__ import annotations

import html
import re

import httpx
from sqlalchemy import select

from broker.dev import DEV_POLICY
from broker.registry import policies
from broker.storage.models import AuditEvent
from tests.flows import test_admin_console as console

settings, carol = console.settings, console.carol  # the console's users and roles, and carol signed in
SALES = ('\n[[rules]]\nid = "sales-demo"\ndescription = "Sales reads the demo"\neffect = "allow"\n'
         'scopes = ["tools:read"]\n\n[rules.subjects]\ngroups = ["sales"]\n\n[rules.targets]\nservers = ["demo"]\n')


def hidden(page: httpx.Response, name: str) -> str:
    return html.unescape(re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', page.text, re.S).group(1))


def version(state) -> int:
    with state.database.sessions() as session:
        return policies.current_document(session)[0]


async def review(carol: httpx.AsyncClient, document: str, comment: str = "") -> httpx.Response:
    token = console.csrf_of(await carol.get("/admin/policies/edit"))
    return await carol.post("/admin/policies/review", data={"csrf_token": token, "document": document,
                                                            "comment": comment})


async def test_rules_are_a_table_with_their_toml_one_click_away(carol: httpx.AsyncClient) -> None:
    page = (await carol.get("/admin/policies")).text
    row = page.split('<tr id="rule-engineering-demo">')[1].split("</tr>")[0]
    assert '<span class="pill ok">allow</span>' in row and "groups engineering" in row
    assert "servers demo" in row and "all of the server&#39;s" in row and "<td>—</td>" in row  # no conditions
    assert '<details class="toml"><summary>TOML</summary><pre>[[rules]]' in row


async def test_the_editor_has_no_apply_and_the_review_shows_the_change_and_who_gains_on_top(
        carol: httpx.AsyncClient, state) -> None:
    editor = (await carol.get("/admin/policies/edit")).text
    assert 'id="review-button"' in editor and 'action="/admin/policies/apply"' not in editor
    page = await review(carol, DEV_POLICY + SALES, "sales may read")
    assert page.status_code == 200 and version(state) == 1  # a review applies nothing
    text = page.text
    assert text.index('id="apply-panel"') < text.index('id="rule-changes"') < text.index('id="access-changes"')
    assert "Apply as version 2" in text and '<span class="pill ok">added</span> <code>sales-demo</code>' in text
    changes = text.split('id="subject-changes"')[1].split("</table>")[0]
    assert "sales" in changes and "gains" in changes and '<code class="diff-add">+tools:read</code>' in changes
    known = text.split('id="known-users"')[1].split("</p>")[0]
    assert "None of the 1 known users gains or loses access" in known  # carol signed in: the only user known


async def test_apply_stores_exactly_the_reviewed_document(carol: httpx.AsyncClient, state) -> None:
    page = await review(carol, DEV_POLICY + SALES, "sales may read")
    form = {"csrf_token": console.csrf_of(page), "document": hidden(page, "document"),
            "comment": hidden(page, "comment"), "review": hidden(page, "review")}
    crlf = {**form, "document": form["document"].replace("\n", "\r\n")}  # what a browser sends back
    applied = await carol.post("/admin/policies/apply", data=crlf)
    assert applied.status_code == 303 and applied.headers["location"] == "/admin/policies?done=2"
    with state.database.sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "policy.changed")).one()
        assert "sales-demo" in policies.export(session)
    assert event.data["reviewed"] is True and event.actor == "console:carol@example.com"
    replayed = await carol.post("/admin/policies/apply", data=form)  # the review was of version 1
    assert replayed.status_code == 409 and 'id="stale"' in replayed.text and version(state) == 2


async def test_an_apply_without_its_review_or_with_another_document_applies_nothing(carol: httpx.AsyncClient,
                                                                                     state) -> None:
    page = await review(carol, DEV_POLICY + SALES)
    token = console.csrf_of(page)
    tampered = DEV_POLICY + SALES.replace('"tools:read"', '"tools:read", "tools:call"')
    for form in ({"document": tampered, "review": hidden(page, "review")}, {"document": DEV_POLICY + SALES}):
        refused = await carol.post("/admin/policies/apply", data={"csrf_token": token, **form})
        assert refused.status_code == 409 and 'id="stale"' in refused.text
        assert "Apply as version 2" in refused.text  # the review of what was sent, to apply after reading it
    assert version(state) == 1


async def test_a_policy_changed_by_someone_else_meanwhile_needs_a_new_review(carol: httpx.AsyncClient,
                                                                             state) -> None:
    page = await review(carol, DEV_POLICY + SALES)
    with state.database.transaction() as session:
        policies.import_policy(session, DEV_POLICY.replace('scopes = "*"', 'scopes = ["tools:read"]'),
                               issuer=state.settings.issuer, author="cli:someone")
    stale = await carol.post("/admin/policies/apply", data={
        "csrf_token": console.csrf_of(page), "document": hidden(page, "document"), "review": hidden(page, "review")})
    assert stale.status_code == 409 and "the policy is now version 2" in stale.text and version(state) == 2
    assert "version 2 in force → would become version 3" in stale.text


async def test_an_invalid_document_goes_back_to_the_editor_with_every_problem(carol: httpx.AsyncClient,
                                                                              state) -> None:
    page = await review(carol, '[[rules]]\nid = "x"\neffect = "maybe"\n')
    assert page.status_code == 400 and 'id="problems"' in page.text and "Nothing was applied" in page.text
    assert 'effect = "maybe"' in html.unescape(page.text.split('id="document"')[1])  # the draft is kept
    assert version(state) == 1


async def test_edit_again_reopens_the_draft(carol: httpx.AsyncClient) -> None:
    page = await review(carol, DEV_POLICY + SALES, "why")
    again = await carol.post("/admin/policies/edit", data={"csrf_token": console.csrf_of(page),
                                                          "document": hidden(page, "document"), "comment": "why"})
    assert again.status_code == 200 and "sales-demo" in again.text and 'value="why"' in again.text


async def test_one_rule_added_changed_or_removed_is_reviewed_first(carol: httpx.AsyncClient, state) -> None:
    token = console.csrf_of(await carol.get("/admin/policies"))
    added = await carol.post("/admin/policies/rules", data={"csrf_token": token, "replace": "",
                                                            "rule": SALES.strip(), "action": "save"})
    assert added.status_code == 200 and "<code>sales-demo</code>" in added.text and version(state) == 1
    applied = await carol.post("/admin/policies/apply", data={
        "csrf_token": token, "document": hidden(added, "document"), "comment": hidden(added, "comment"),
        "review": hidden(added, "review")})
    assert applied.headers["location"] == "/admin/policies?done=2"
    edited = await carol.post("/admin/policies/rules", data={
        "csrf_token": token, "replace": "sales-demo", "rule": SALES.strip().replace('["tools:read"]', '"*"'),
        "action": "save"})
    field = edited.text.split('<span class="pill wait">changed</span> <code>sales-demo</code>')[1].split("</table>")[0]
    assert ('<th>scopes</th><td class="diff-del">tools:read</td><td class="diff-add">all of the server&#39;s</td>'
            in field)
    removed = await carol.post("/admin/policies/rules", data={"csrf_token": token, "replace": "engineering-demo",
                                                              "action": "remove"})
    assert '<span class="pill bad">removed</span> <code>engineering-demo</code>' in removed.text
    broken = await carol.post("/admin/policies/rules", data={"csrf_token": token, "replace": "",
                                                             "rule": "[[rules]]\nid = 7", "action": "save"})
    assert broken.status_code == 400 and "Nothing was applied" in broken.text
    forged = await carol.post("/admin/policies/rules", data={"replace": "engineering-demo", "action": "remove"})
    assert forged.status_code == 403 and version(state) == 2


async def test_a_rollback_is_reviewed_then_applied(carol: httpx.AsyncClient, state) -> None:
    with state.database.transaction() as session:
        policies.import_policy(session, DEV_POLICY + SALES, issuer=state.settings.issuer, author="test")
    token = console.csrf_of(await carol.get("/admin/policies"))
    reviewed = await carol.post("/admin/policies/rollback", data={"csrf_token": token, "version": "1"})
    assert reviewed.status_code == 200 and "roll back to version 1" in reviewed.text and version(state) == 2
    assert '<span class="pill bad">removed</span> <code>sales-demo</code>' in reviewed.text
    applied = await carol.post("/admin/policies/apply", data={
        "csrf_token": token, "rollback": "1", "review": hidden(reviewed, "review")})
    assert applied.headers["location"] == "/admin/policies?done=3"
    with state.database.sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "policy.rolled_back")).one()
    assert event.data["restored_version"] == 1 and event.data["reviewed"] is True
    again = await carol.post("/admin/policies/apply", data={
        "csrf_token": token, "rollback": "1", "review": hidden(reviewed, "review")})
    assert again.status_code == 409 and version(state) == 3
    missing = await carol.post("/admin/policies/rollback", data={"csrf_token": token, "version": "99"})
    assert missing.status_code == 400 and "does not exist" in missing.text


async def test_only_admins_may_review_or_apply(client: httpx.AsyncClient, state) -> None:
    await console.sign_in(client, "dave")  # an auditor
    token = console.csrf_of(await client.get("/admin/policies"))
    assert 'id="edit-policy"' not in (await client.get("/admin/policies")).text
    assert (await client.get("/admin/policies/edit")).status_code == 403
    for path in ("/admin/policies/review", "/admin/policies/apply", "/admin/policies/rollback"):
        refused = await client.post(path, data={"csrf_token": token, "document": DEV_POLICY + SALES, "version": "1"})
        assert refused.status_code == 403, path
    assert version(state) == 1
