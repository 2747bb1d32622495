"""OpenTelemetry tracing (the otel extra): one trace from /authorize through the upstream call to /token."""

from __future__ import annotations

import functools
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from broker import app as app_module  # noqa: E402
from tests.support.oauth_flow import register_client, tokens_for  # noqa: E402

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    monkeypatch.setattr(app_module, "build_tracing", functools.partial(app_module.build_tracing, exporter=memory))
    return memory


@pytest.fixture
def settings(make_settings: Any, exported: InMemorySpanExporter) -> Any:
    return make_settings(tracing={"enabled": True})


async def test_one_trace_from_authorize_through_the_upstream_call_to_token(client, state, exported) -> None:
    client_id = register_client(state, trusted=True).row.id
    client.headers["traceparent"] = f"00-{TRACE_ID}-{CALLER_SPAN}-01"  # the caller's trace, on each of its requests
    assert "access_token" in await tokens_for(client, client_id)
    spans = [s for s in exported.get_finished_spans() if f"{s.context.trace_id:032x}" == TRACE_ID]
    by_name = {s.name: s for s in spans}
    assert {"GET /authorize", "GET /callback/{idp_id}", "POST /token"} <= set(by_name)
    assert all(f"{s.parent.span_id:016x}" == CALLER_SPAN for s in spans if s.kind is SpanKind.SERVER)
    upstream = by_name["idp token"]
    callback = by_name["GET /callback/{idp_id}"]
    assert upstream.kind is SpanKind.CLIENT and upstream.parent.span_id == callback.context.span_id
    assert upstream.attributes["broker.peer"] == "test" and upstream.attributes["broker.outcome"] == "2xx"
    assert by_name["POST /token"].attributes["http.response.status_code"] == 200


async def test_spans_carry_no_query_string(client, exported) -> None:
    await client.get("/authorize?client_id=secret-looking&state=abc")
    names_and_paths = [(s.name, s.attributes.get("url.path")) for s in exported.get_finished_spans()]
    assert names_and_paths and all("?" not in f"{n}{p}" and "abc" not in f"{n}{p}" for n, p in names_and_paths)


def test_tracing_is_off_by_default(make_settings: Any) -> None:
    settings = make_settings()
    assert app_module.build_tracing(settings) is None
