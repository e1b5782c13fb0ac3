"""Prometheus metrics of a server, per model: requests by method and status code, the latency of
each stage (queue wait, tokenizing, the ONNX Runtime call, the whole request), rows and padded
tokens per call, the queue's depth, refusals, reloads, where bf16 probabilities came from, the
HTTP server's connections and client errors (runtime/serving/http_limits.py), and the process's
memory and CPU.

Each server has a registry of its own (several servers may share a process, as in the tests);
``gradlight serve`` exposes it at ``GET /metrics`` on its HTTP port (runtime/serving/web.py).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_TOKENS = (16, 64, 256, 1024, 4096, 8192, 16384, 65536, 262144)


# (attribute, kind, name, help, labels, buckets): every metric a server exports.
_METRICS = (
    ("requests", Counter, "gradlight_requests",
     "Requests answered, by model, method and status code (an HTTP request by the gRPC code "
     "its status maps from)", ("model", "method", "code"), None),
    ("request_seconds", Histogram, "gradlight_request_seconds",
     "Whole requests, from the API taking them to the answer", ("model", "method"), _SECONDS),
    ("tokenize_seconds", Histogram, "gradlight_tokenize_seconds",
     "Tokenizing and planning a request's rows (sentence variants and label rows)",
     ("model", "method"), _SECONDS),
    ("queue_wait_seconds", Histogram, "gradlight_queue_wait_seconds",
     "Time a request's rows for one graph waited in the batching queue", ("model", "graph"),
     _SECONDS),
    ("inference_seconds", Histogram, "gradlight_inference_seconds",
     "One ONNX Runtime call", ("model", "graph"), _SECONDS),
    ("batch_rows", Histogram, "gradlight_batch_rows",
     "Rows (token sequences) per ONNX Runtime call", ("model", "graph"), _ROWS),
    ("batch_padded_tokens", Histogram, "gradlight_batch_padded_tokens",
     "Rows x padded length per ONNX Runtime call", ("model", "graph"), _TOKENS),
    ("queue_rows", Gauge, "gradlight_queue_rows",
     "Rows waiting for a model: queued, or held by requests being prepared", ("model",), None),
    ("refusals", Counter, "gradlight_refusals",
     "Requests refused because of the server's state or limits, by reason (QUEUE_FULL, "
     "RESPONSE_TOO_LARGE, SHUTTING_DOWN, UNAUTHENTICATED)", ("model", "reason"), None),
    ("reloads", Counter, "gradlight_reloads",
     "Artifact reloads, by outcome (reloaded, unchanged, refused)", ("model", "outcome"), None),
    ("bf16_probabilities", Counter, "gradlight_bf16_probabilities",
     "Texts whose probabilities a bf16 attribution graph's logits could give, by where they "
     "came from: bf16 (within 0.01 of fp32 by the graph's margin) or fp32 (the forward graph "
     "ran for them)", ("model", "source"), None),
    ("windows", Counter, "gradlight_windows",
     "Windows read of texts longer than the model's window (long_texts 'windows'), and "
     "documents read as windows", ("model", "kind"), None),
    ("http_connections", Gauge, "gradlight_http_connections",
     "HTTP connections open (not counting those refused over --http-max-connections)", (),
     None),
    ("http_connections_refused", Counter, "gradlight_http_connections_refused",
     "HTTP connections refused with 503 because --http-max-connections were open", (), None),
    ("http_client_errors", Counter, "gradlight_http_client_errors",
     "HTTP requests that failed by the client's doing, by reason: header_timeout (no complete "
     "head within --http-header-timeout; closed), body_timeout (no complete body within "
     "--http-body-timeout; 408 and closed), body_incomplete (the body broken off or "
     "malformed)", ("reason",), None),
    ("model_info", Gauge, "gradlight_model_info",
     "The artifact each model serves (1 for the current revision)",
     ("model", "revision", "precision", "provider"), None),
)  # fmt: skip


class ServerMetrics:
    """The metrics of one server (``_METRICS``, each an attribute). ``model(name)`` gives the
    view a model's batcher and attributor record into."""

    requests: Counter
    request_seconds: Histogram
    tokenize_seconds: Histogram
    queue_wait_seconds: Histogram
    inference_seconds: Histogram
    batch_rows: Histogram
    batch_padded_tokens: Histogram
    queue_rows: Gauge
    refusals: Counter
    reloads: Counter
    bf16_probabilities: Counter
    windows: Counter
    http_connections: Gauge
    http_connections_refused: Counter
    http_client_errors: Counter
    model_info: Gauge

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU, fds
        PlatformCollector(registry=self.registry)
        for attribute, kind, name, description, labels, buckets in _METRICS:
            extra = {"buckets": buckets} if buckets is not None else {}
            metric = kind(name, description, labels, registry=self.registry, **extra)
            setattr(self, attribute, metric)

    def model(self, name: str) -> ModelMetrics:
        return ModelMetrics(self, name)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class ModelMetrics:
    """What one model's batcher and attributor record."""

    def __init__(self, metrics: ServerMetrics, name: str) -> None:
        self.metrics = metrics
        self.name = name

    def queue_depth(self, rows: Callable[[], float]) -> None:
        """Report ``rows()`` as the model's queue depth at every scrape."""
        self.metrics.queue_rows.labels(self.name).set_function(rows)

    def waited(self, graph: str, seconds: float) -> None:
        self.metrics.queue_wait_seconds.labels(self.name, graph).observe(seconds)

    def called(self, graph: str, rows: int, width: int, seconds: float) -> None:
        m = self.metrics
        m.inference_seconds.labels(self.name, graph).observe(seconds)
        m.batch_rows.labels(self.name, graph).observe(rows)
        m.batch_padded_tokens.labels(self.name, graph).observe(rows * width)

    def tokenized(self, rpc: str, seconds: float) -> None:
        self.metrics.tokenize_seconds.labels(self.name, rpc).observe(seconds)

    def windows(self, documents: int, windows: int) -> None:
        """A request read ``documents`` texts as ``windows`` windows in all."""
        self.metrics.windows.labels(self.name, "document").inc(documents)
        self.metrics.windows.labels(self.name, "window").inc(windows)

    def probabilities_checked(self, texts: int, in_fp32: int) -> None:
        """Of ``texts`` with probabilities from a bf16 graph's logits, ``in_fp32`` needed the
        fp32 forward."""
        counter = self.metrics.bf16_probabilities
        counter.labels(self.name, "bf16").inc(texts - in_fp32)
        counter.labels(self.name, "fp32").inc(in_fp32)
