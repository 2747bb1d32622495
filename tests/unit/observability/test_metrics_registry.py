"""The metrics object, the bearer check and the separate listener, without the web app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from broker import config
from broker.audit import ObservedEvent
from broker.config import MetricsSettings
from broker.observability import Metrics, MetricsListener, MetricsUnavailable, bearer_matches
from broker.observability.metrics import pool_status

TOKEN = "t" * 40


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    engine = create_engine("sqlite://", poolclass=StaticPool)
    made = Metrics(MetricsSettings(enabled=True, bearer_token=SecretStr(TOKEN)), pool=lambda: engine.pool)
    yield made
    made.close()


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = m.render()[0].decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def event(event_type: str, outcome: str = "success", server_id: str | None = "demo", **data: Any) -> ObservedEvent:
    return ObservedEvent(event_type, outcome, "client-1", server_id, data)


@pytest.mark.parametrize("observed,metric,labels", [
    (event("token.issued", grant="client_credentials"), "broker_tokens_issued_total",
     (("grant_type", "client_credentials"), ("server", "demo"))),
    (event("token.issued", grant="jwt-bearer"), "broker_tokens_issued_total",
     (("grant_type", "jwt-bearer"), ("server", "demo"))),
    (event("token.refreshed"), "broker_tokens_issued_total", (("grant_type", "refresh_token"), ("server", "demo"))),
    (event("id_jag.issued"), "broker_tokens_issued_total", (("grant_type", "token-exchange"), ("server", "demo"))),
    (event("authorization.denied", "denied"), "broker_policy_denials_total", (("server", "demo"), ("stage", "token"))),
    (event("authorization.decision", "denied"), "broker_policy_denials_total",
     (("server", "demo"), ("stage", "authorize"))),
    (event("authorization.step_up_required", "denied"), "broker_policy_denials_total",
     (("server", "demo"), ("stage", "step_up"))),
    (event("user.offboarded", "revoked", None), "broker_revocations_total", (("kind", "user_offboarded"),)),
    (event("user.sessions_revoked", "revoked", None), "broker_revocations_total",
     (("kind", "user_sessions_revoked"),)),
    (event("token.revoked", "revoked", None, token_type="refresh_token"), "broker_revocations_total",
     (("kind", "family_revoked"),)),
    (event("token.revoked", "revoked", None, token_type="access_token"), "broker_revocations_total",
     (("kind", "token_revoked"),)),
    (event("refresh_token.reuse_detected", "revoked", None), "broker_refresh_token_reuse_detected_total", ()),
    (event("authorization_code.replayed", "revoked", None, family_id="f1"), "broker_revocations_total",
     (("kind", "authorization_code_replay"),)),
])
def test_audit_events_become_operational_counts(metrics: Metrics, observed: ObservedEvent, metric: str,
                                                labels: tuple) -> None:
    metrics.count_audit_event(observed)
    found = samples(metrics)
    assert found[(metric, labels)] == 1
    assert found[("broker_audit_events_total", (("event_type", observed.event_type),
                                                ("outcome", observed.outcome)))] == 1


def test_an_allowed_decision_is_no_denial(metrics: Metrics) -> None:
    metrics.count_audit_event(event("authorization.decision", "allowed"))
    assert not any(name == "broker_policy_denials_total" for name, _ in samples(metrics))


def test_requests_are_labelled_by_status_class_and_known_methods(metrics: Metrics) -> None:
    metrics.observe_request("/token", "POST", 200, 0.002)
    metrics.observe_request("/token", "POST", 201, 0.004)
    metrics.observe_request("/token", "PROPFIND", 405, 0.001)
    found = samples(metrics)
    assert found[("broker_http_requests_total", (("method", "POST"), ("route", "/token"), ("status", "2xx")))] == 2
    assert found[("broker_http_requests_total", (("method", "other"), ("route", "/token"), ("status", "4xx")))] == 1
    bucket = (("le", "0.0025"), ("method", "POST"), ("route", "/token"), ("status", "2xx"))
    assert found[("broker_http_request_duration_seconds_bucket", bucket)] == 1


def test_pools_without_a_size_are_left_out(metrics: Metrics) -> None:
    assert pool_status(lambda: create_engine("sqlite://", poolclass=StaticPool).pool) is None
    assert not any(name.startswith("broker_db_pool") for name, _ in samples(metrics))
    assert pool_status(None) is None


def test_a_queue_pool_is_read_as_it_is_now(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}", pool_size=3, max_overflow=2)
    with engine.connect():
        assert pool_status(lambda: engine.pool) == (3, 1, 0, 0)
    assert pool_status(lambda: engine.pool) == (3, 0, 1, 0)
    engine.dispose()


def test_a_shared_directory_needs_prometheus_client_imported_after_it_was_named(tmp_path) -> None:
    with pytest.raises(MetricsUnavailable):  # this process imported prometheus_client without the variable
        Metrics(MetricsSettings(enabled=True, listen="127.0.0.1:0"), multiprocess_dir=str(tmp_path))


@pytest.mark.parametrize("header,ok", [(f"Bearer {TOKEN}", True), (f"bearer {TOKEN}", True), (None, False),
                                       ("", False), (f"Basic {TOKEN}", False), (f"Bearer {TOKEN[:-1]}", False),
                                       (f"Bearer {TOKEN}{TOKEN}", False), ("Bearer", False)])
def test_the_bearer_check(header: str | None, ok: bool) -> None:
    assert bearer_matches(header, TOKEN) is ok


def test_the_listener_serves_metrics_only_and_stops() -> None:
    listener = MetricsListener("127.0.0.1", 0, lambda: (b"up 1\n", "text/plain; version=0.0.4"), TOKEN)
    port = listener.start()
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text == "up 1\n"
        refused = httpx.get(f"{url}/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(f"{url}/other").status_code == 404
        assert httpx.post(f"{url}/metrics").status_code == 501
    finally:
        listener.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


@pytest.mark.parametrize("listen", ["9464", "localhost:", ":9464", "127.0.0.1:99999", "127.0.0.1:http"])
def test_a_bad_listen_address_is_a_config_error(listen: str) -> None:
    with pytest.raises(config.ConfigError, match="metrics.listen"):
        config.load(None, env={}, defaults={"mode": "dev", "issuer": "http://127.0.0.1:8000",
                                            "metrics": {"enabled": True, "listen": listen}})


def test_metrics_switched_on_need_a_token_or_a_port() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load(None, env={}, defaults={"mode": "dev", "issuer": "http://127.0.0.1:8000",
                                            "metrics": {"enabled": True, "bearer_token": "short"}})
    assert info.value.problems == ["metrics.bearer_token: at least 32 random characters (`broker keys new-kek` "
                                   "makes one)"]
    with pytest.raises(config.ConfigError, match="metrics.enabled: set metrics.bearer_token"):
        config.load(None, env={}, defaults={"mode": "dev", "issuer": "http://127.0.0.1:8000",
                                            "metrics": {"enabled": True}})


def test_the_token_can_come_from_a_file_or_the_environment(tmp_path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    base = {"mode": "dev", "issuer": "http://127.0.0.1:8000"}
    from_file = config.load(None, env={}, defaults={**base, "metrics": {"enabled": True,
                                                                       "bearer_token_file": str(path)}})
    from_env = config.load(None, env={"BROKER_METRICS__ENABLED": "true", "BROKER_METRICS__BEARER_TOKEN": TOKEN},
                           defaults=base)
    assert from_file.metrics.bearer_token.get_secret_value() == from_env.metrics.bearer_token.get_secret_value()
    assert TOKEN not in repr(from_env.metrics)
