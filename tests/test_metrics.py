"""The Prometheus endpoint, scraped after known traffic: requests by model, method and code,
latency histograms of every stage, rows and padded tokens per ONNX Runtime call, the queue's
depth, refusals and the process's memory; behind the token unless made public."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from http_json import request, request_json
from prometheus_client.parser import text_string_to_metric_families
from serving import ServerThread

from gradlight.runtime.serving.server import ServerSettings
from gradlight.runtime.settings import BatchSettings
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1.gradlight_pb2_grpc import AttributorStub

TEXT = "The patient denies chest pain. No fever."


def _scrape(url: str, headers: dict[str, str] | None = None) -> dict[str, list]:
    status, response_headers, payload = request(url + "metrics", headers=headers)
    assert status == 200 and response_headers["Content-Type"].startswith("text/plain")
    return {
        family.name: family.samples for family in text_string_to_metric_families(payload.decode())
    }


def _value(metrics: dict[str, list], sample: str, **labels: str) -> float:
    family = metrics[sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum")]
    found = [
        s.value
        for s in family
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found)


def test_a_scrape_counts_the_traffic_that_was_sent(engine_for):
    settings = ServerSettings(
        port=0, http_port=0, batch=BatchSettings(max_queue_size=3, max_wait_ms=300)
    )
    with ServerThread({"bert": engine_for("bert")}, settings) as server:
        stub = AttributorStub(grpc.insecure_channel(server.address))
        batcher = server.running.registry.models["bert"].batcher
        for _ in range(3):
            stub.Predict(pb.PredictRequest(texts=[TEXT]))
        for _ in range(2):
            status, _ = request_json(
                server.http_url + "v1/attribute",
                {"texts": [TEXT, TEXT], "token_attributions": True, "sentence_attributions": True},
            )
            assert status == 200
        with pytest.raises(grpc.RpcError):
            stub.Attribute(pb.AttributeRequest(texts=[""], token_attributions=True))
        with pytest.raises(grpc.RpcError):
            stub.Predict(pb.PredictRequest(model="gpt", texts=[TEXT]))
        waiting = threading.Thread(target=lambda: stub.Predict(pb.PredictRequest(texts=[TEXT] * 3)))
        waiting.start()
        time.sleep(0.1)  # it holds the whole queue for the batch window
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(pb.PredictRequest(texts=[TEXT]))
        waiting.join()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        calls = list(batcher.history)
        metrics = _scrape(server.http_url)

    requests = "gradlight_requests_total"
    assert _value(metrics, requests, model="bert", method="Predict", code="OK") == 4
    assert _value(metrics, requests, model="bert", method="Attribute", code="OK") == 2
    assert _value(metrics, requests, model="bert", method="Attribute", code="INVALID_ARGUMENT") == 1
    assert _value(metrics, requests, model="", method="Predict", code="NOT_FOUND") == 1
    assert _value(metrics, requests, model="bert", method="Predict", code="RESOURCE_EXHAUSTED") == 1
    assert _value(metrics, "gradlight_request_seconds_count", model="bert") == 8
    assert _value(metrics, "gradlight_refusals_total", model="bert", reason="QUEUE_FULL") == 1
    # Tokenizing: every request that got past the checks and admission.
    assert _value(metrics, "gradlight_tokenize_seconds_count", model="bert") == 6
    # Each ONNX Runtime call: one observation of its time, rows and padded tokens.
    assert _value(metrics, "gradlight_inference_seconds_count", model="bert") == len(calls)
    assert _value(metrics, "gradlight_batch_rows_sum", model="bert") == sum(c.rows for c in calls)
    padded = sum(c.rows * c.width for c in calls)
    assert _value(metrics, "gradlight_batch_padded_tokens_sum", model="bert") == padded
    for graph in ("forward", "attribution"):
        assert _value(metrics, "gradlight_queue_wait_seconds_count", model="bert", graph=graph) > 0
    assert _value(metrics, "gradlight_queue_rows", model="bert") == 0
    assert _value(metrics, "process_resident_memory_bytes") > 50e6
    (info,) = metrics["gradlight_model_info"]
    assert (
        info.value == 1
        and info.labels["precision"] == "fp32"
        and len(info.labels["revision"]) == 16
    )


@pytest.mark.parametrize("public", [False, True])
def test_the_metrics_are_behind_the_token_unless_public(engine_for, tmp_path, public):
    token = "metrics-token-0123456789abcdef"
    tokens = tmp_path / "tokens"
    tokens.write_text(token + "\n")
    tokens.chmod(0o600)
    settings = ServerSettings(port=0, http_port=0, auth_token_file=tokens, metrics_public=public)
    with ServerThread({"bert": engine_for("bert")}, settings) as server:
        status, _, _ = request(server.http_url + "metrics")
        assert status == (200 if public else 401)
        metrics = _scrape(server.http_url, {"Authorization": f"Bearer {token}"})
        assert "gradlight_requests" in metrics
        status, _, _ = request(server.http_url + "v1/models")
        assert status == 401  # the rest stays behind the token
