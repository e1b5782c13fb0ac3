"""Faults on a real server: clients that cancel or run out of time mid-batch, and an ONNX
Runtime error inside one batch (the real engine wrapped so that a real out-of-range token id is
fed to the real graph). The others are answered, the server keeps serving. (SIGTERM under load:
tests/test_serve_cli.py.)"""

from __future__ import annotations

import functools
import logging
import threading
import time

import grpc
import numpy as np
import pytest
from serving import FaultyEngine, ServerThread

from gradlight.artifact.manifest import FORWARD
from gradlight.client import Client
from gradlight.runtime.serving.server import ServerSettings
from gradlight.runtime.serving.service import STREAM_WINDOW
from gradlight.runtime.settings import BatchSettings
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1.gradlight_pb2_grpc import AttributorStub

TEXT = "The patient denies chest pain. No evidence of pneumonia."
WINDOW = ServerSettings(port=0, batch=BatchSettings(max_wait_ms=600, max_batch_size=64))


def _texts(tag: str, count: int = 2) -> list[str]:
    return [f"{tag} {k}: {TEXT}" for k in range(count)]


@pytest.fixture
def engine(engine_for):
    faulty = FaultyEngine(engine_for("bert"))
    yield faulty
    faulty.fault = None


@pytest.fixture
def server(engine):
    with ServerThread({"bert": engine}, WINDOW) as running:
        yield running


@pytest.fixture
def batcher(server):
    return server.running.registry.models["bert"].batcher


@pytest.fixture
def held(engine):
    """Hold the next ONNX Runtime call until released: ``(in_call, release)`` events."""
    in_call, release = threading.Event(), threading.Event()

    def hold(graph, batch):
        in_call.set()
        release.wait(10)

    engine.fault = hold
    yield in_call, release
    release.set()


def test_a_request_cancelled_while_queued_is_dropped_and_its_batch_answered(server, batcher):
    stub = AttributorStub(grpc.insecure_channel(server.address))
    before_calls, before_dropped = batcher.calls, batcher.dropped_rows
    calls = {tag: stub.Predict.future(pb.PredictRequest(texts=_texts(tag))) for tag in "abcd"}
    time.sleep(0.2)  # all four wait in the queue for the batch window
    assert calls["b"].cancel()
    for tag in "acd":
        assert [r.text for r in calls[tag].result(timeout=30).results] == _texts(tag)
    assert calls["b"].cancelled()
    assert batcher.dropped_rows - before_dropped == 2  # b's two rows were never computed
    made = list(batcher.history)[-(batcher.calls - before_calls) :]
    assert sum(call.rows for call in made) == 6  # a, c and d only


def test_a_request_cancelled_during_its_call_leaves_the_others_answered(
    server, engine, held, caplog
):
    """The call is already in ONNX Runtime (held there by the fault): its result for the
    cancelled request is discarded, the others get theirs, nothing is logged as an error."""
    in_call, release = held
    stub = AttributorStub(grpc.insecure_channel(server.address))
    request = pb.AttributeRequest(texts=_texts("x"), sentence_attributions=True)
    cancelled = stub.Attribute.future(request)
    kept = [
        stub.Attribute.future(pb.AttributeRequest(texts=_texts(tag), token_attributions=True))
        for tag in "yz"
    ]
    assert in_call.wait(10)
    assert cancelled.cancel()
    release.set()
    for tag, call in zip("yz", kept, strict=True):
        assert [r.text for r in call.result(timeout=30).results] == _texts(tag)
    engine.fault = None
    with Client(server.address) as client:
        assert client.health() == "SERVING"
        assert client.predict([TEXT], model="bert").results[0].text == TEXT
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_deadline_passing_mid_batch_fails_only_that_request(server, held):
    in_call, release = held
    stub = AttributorStub(grpc.insecure_channel(server.address))
    hurried = stub.Predict.future(pb.PredictRequest(texts=_texts("h")), timeout=1.0)
    patient = stub.Predict.future(pb.PredictRequest(texts=_texts("p")), timeout=30)
    assert in_call.wait(10)
    with pytest.raises(grpc.RpcError) as info:
        hurried.result(timeout=10)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    release.set()
    assert [r.text for r in patient.result(timeout=30).results] == _texts("p")


def test_a_stream_cancelled_midway_stops_its_work_and_the_server_goes_on(server, batcher):
    """Of 200 requests, only those read ahead of the cancel (a window of 8) can have run."""
    before = batcher.calls
    stub = AttributorStub(grpc.insecure_channel(server.address))
    requests = (pb.AttributeRequest(texts=_texts(f"s{i}", 1)) for i in range(200))
    stream = stub.AttributeStream(requests)
    first = next(stream)
    assert first.results[0].text == _texts("s0", 1)[0]
    stream.cancel()
    time.sleep(1.5)  # past the batch window: whatever was still queued has been dropped
    assert batcher.waiting_rows == 0
    computed = sum(call.rows for call in list(batcher.history)[-(batcher.calls - before) :])
    assert 1 <= computed <= 2 * STREAM_WINDOW, computed
    with Client(server.address) as client:
        assert client.attribute([TEXT], model="bert").results[0].text == TEXT


def _poison(engine, text):
    """A fault that feeds a real out-of-range token id to ONNX Runtime for ``text``'s row: the
    graph's embedding lookup fails, exactly like a corrupt input would."""
    poisoned = [engine.encode([text], engine.max_length)[0].ids]
    calls = []

    def hook(graph, batch):
        ids = batch.feed["input_ids"]
        for row in range(ids.shape[0]):
            for bad in poisoned:
                if np.array_equal(ids[row, : len(bad)], bad) and batch.lengths[row] == len(bad):
                    ids[row, 1] = 10**6
        calls.append((graph, ids.shape[0]))

    return hook, calls


@pytest.mark.parametrize(
    ("method", "graph"), [("Predict", "forward"), ("Attribute", "attribution")]
)
def test_an_inference_error_in_one_batch_fails_only_its_request(
    server, engine, caplog, method, graph
):
    poison = "Poisoned note: the embedding lookup will fail."
    hook, calls = _poison(engine, poison)
    engine.fault = hook
    stub = AttributorStub(grpc.insecure_channel(server.address))
    if method == "Predict":
        message = pb.PredictRequest
    else:  # token attributions: the attribution graph alone (its logits are the prediction)
        message = functools.partial(pb.AttributeRequest, token_attributions=True)
    rpc = getattr(stub, method)
    good = {tag: rpc.future(message(texts=_texts(tag))) for tag in "abc"}
    bad = rpc.future(message(texts=[poison]))
    for tag, call in good.items():
        assert [r.text for r in call.result(timeout=30).results] == _texts(tag)
    with pytest.raises(grpc.RpcError) as info:
        bad.result(timeout=30)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert f"inference failed on the {graph} graph for this request" in info.value.details()
    assert "retrying its 4 requests alone" in caplog.text  # one batch, then each alone
    assert {name for name, _ in calls} == {graph}
    engine.fault = None
    with Client(server.address) as client:
        assert client.health() == "SERVING"
        assert client.predict([poison], model="bert").results[0].text == poison


def test_forward_graph_errors_for_sentence_variants_fail_only_their_request(server, engine):
    """The row that fails is a leave-one-sentence-out variant, not a text sent."""
    text = "First sentence here. The second one fails."
    variant = "The second one fails."
    hook, _ = _poison(engine, variant)

    def on_forward(graph, batch):
        if graph == FORWARD:
            hook(graph, batch)

    engine.fault = on_forward
    stub = AttributorStub(grpc.insecure_channel(server.address))
    ok = stub.Attribute.future(pb.AttributeRequest(texts=_texts("ok"), sentence_attributions=True))
    failing = stub.Attribute.future(pb.AttributeRequest(texts=[text], sentence_attributions=True))
    assert [r.text for r in ok.result(timeout=30).results] == _texts("ok")
    with pytest.raises(grpc.RpcError) as info:
        failing.result(timeout=30)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "inference failed on the forward graph" in info.value.details()
