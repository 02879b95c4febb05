"""Prometheus metrics of the API: a latency histogram per endpoint, requests by status code, and
which source answered each recommendation request.

Endpoints are labelled by their route template (``/recommendations/{user_id}``), never by the raw
path, so the number of series stays bounded; paths that match no route count as ``unmatched``.
With several uvicorn workers, each is its own process: ``clickrec serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` so that every worker writes its samples there and ``/metrics`` (served by
whichever worker) adds them all up (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Fine below 50 ms, where the API's target lies.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ApiMetrics:
    """The API's metrics, in a registry of their own (one per app, so that apps in tests do not clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "clickrec_api_request_duration_seconds", "Time from request to the end of the response, by endpoint.",
            ["endpoint", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.requests = Counter(
            "clickrec_api_requests", "Requests answered, by endpoint and HTTP status code.",
            ["endpoint", "method", "status"], registry=self.registry)
        self.recommendation_source = Counter(
            "clickrec_api_recommendation_source", "Recommendation answers by the source that produced them.",
            ["source"], registry=self.registry)
        self.dropped_connections = Counter(
            "clickrec_api_dropped_connections", "Reads retried because the server had dropped their pooled "
            "connection (a PostgreSQL restart or failover).", registry=self.registry)
        self._children: dict[tuple[str, str, int], tuple] = {}  # labelled series, looked up once

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.latency.labels(endpoint, method),
                                              self.requests.labels(endpoint, method, str(status)))
        children[0].observe(seconds)
        children[1].inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text: every worker's samples in multiprocess mode, this app's otherwise."""
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task or body buffering, unlike BaseHTTPMiddleware)."""

    def __init__(self, app, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_and_note_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(endpoint, scope["method"], status, time.perf_counter() - started)
