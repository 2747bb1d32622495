"""OpenTelemetry traces, when ``tracing.enabled`` (the ``otel`` extra: ``pip install 'mcp-auth-broker[otel]'``).

One server span per HTTP request, started at the outermost ASGI layer (so the token engine's front and
FastAPI alike), joining the caller's trace when the request carries a W3C ``traceparent``; one client
span per upstream call (``on_upstream``), a child of the request that made it. Off, nothing here is
imported or run. The spans carry methods, paths, statuses and configured ids: never a query string, a
header value or a body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from broker.config import TracingSettings
from broker.observability.upstream import UpstreamCallLike

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
EXTRA = "pip install 'mcp-auth-broker[otel]'"


class TracingUnavailable(Exception):
    """Tracing is configured but cannot run (one clear line)."""


class Tracing:
    """The broker's tracer provider (its own, not the process-global one) and what feeds it."""

    def __init__(self, settings: TracingSettings, exporter: Any = None):
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            raise TracingUnavailable(f"tracing.enabled: OpenTelemetry is not installed ({EXTRA})") from None
        self.provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}),
                                       sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
        processor = SimpleSpanProcessor if exporter is not None else BatchSpanProcessor  # tests read at once
        self.provider.add_span_processor(processor(exporter or _exporter(settings)))
        self.tracer = self.provider.get_tracer("broker")
        self.propagator = TraceContextTextMapPropagator()
        self._closers: list[Callable[[], None]] = []

    def watch(self, stop: Callable[[], None]) -> None:
        """Call ``stop`` at ``close`` (the subscriptions the composition root made for this tracing)."""
        self._closers.append(stop)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """``app`` with a server span around each HTTP request."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        async def traced(scope: Scope, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
            method, status = scope["method"], 500
            with self.tracer.start_as_current_span(method, context=self.propagator.extract(carrier),
                                                   kind=SpanKind.SERVER, record_exception=False,
                                                   attributes={"http.request.method": method,
                                                               "url.path": scope["path"]}) as span:
                async def sending(message: Any) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send(message)

                try:
                    await app(scope, receive, sending)
                finally:
                    span.update_name(_name(scope, method, status))
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))

        return traced

    def on_upstream(self, call: UpstreamCallLike) -> None:
        """A client span for a finished upstream call, under the request span current in the caller."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        start = int(call.started_at * 1e9)
        span = self.tracer.start_span(f"{call.peer_kind} {call.endpoint}", kind=SpanKind.CLIENT, start_time=start,
                                      attributes={"broker.peer_kind": call.peer_kind, "broker.peer": call.peer,
                                                  "broker.endpoint": call.endpoint, "broker.outcome": call.outcome})
        if call.outcome != "2xx":
            span.set_status(Status(StatusCode.ERROR, call.outcome))
        span.end(end_time=start + int(call.seconds * 1e9))

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()
        self.provider.shutdown()  # exports what is still queued


def _name(scope: Scope, method: str, status: int) -> str:
    """``GET /callback/{idp_id}``: the route template when the router found one, never an id from the path."""
    template = getattr(scope.get("route"), "path", None)
    if template:
        return f"{method} {template}"
    return method if status == 404 else f"{method} {scope['path']}"


def _exporter(settings: TracingSettings) -> Any:
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise TracingUnavailable(f"tracing.exporter = \"otlp\": the OTLP exporter is not installed ({EXTRA})") from None
    return OTLPSpanExporter(endpoint=settings.endpoint or None)


