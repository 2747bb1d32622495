"""Metrics for ``broker serve --workers N``: prometheus-client's multiprocess mode.

uvicorn's workers are separate processes, and a scrape reaches only one of them. So the serve command
creates a fresh directory, names it in ``PROMETHEUS_MULTIPROC_DIR`` before the workers start (each
worker's prometheus-client then writes its values to files there), serves the separate metrics port
(``metrics.listen``) itself from those files, and removes the directory when the server stops.
``/metrics`` on the main port, answered by whichever worker gets the request, reads the same files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from broker.config import MetricsSettings, parse_listen
from broker.observability.listener import MetricsListener, Render

ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def shared_by_workers(settings: MetricsSettings, workers: int) -> Iterator[str | None]:
    """Around ``uvicorn.run``: the directory the workers share (None when metrics are off or there is
    one worker, which keeps its values in memory), and the separate listener when configured."""
    if not settings.enabled or workers < 2:
        os.environ.pop(ENV, None)  # one in-process worker: nothing to share
        yield None
        return
    directory = tempfile.mkdtemp(prefix="broker-metrics-")
    os.environ[ENV] = directory
    listener = None
    try:
        if settings.listen:
            listener = MetricsListener(*parse_listen(settings.listen), _reader(directory),
                                       settings.bearer_token.get_secret_value().strip()
                                       if settings.bearer_token else None)
            listener.start()
        yield directory
    finally:
        if listener is not None:
            listener.stop()
        os.environ.pop(ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def _reader(directory: str) -> Render:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return lambda: (generate_latest(registry), CONTENT_TYPE_LATEST)
