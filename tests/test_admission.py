"""Admission to a model's queue: a request holds room from before tokenizing until its rows are
queued, is admitted whole or refused whole (never by its own rows), and a request cancelled
while its texts are being tokenized keeps its room until the tokenizing thread is done."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from serving import ServerThread

from gradlight.client import Client
from gradlight.runtime.errors import QueueFullError
from gradlight.runtime.execution.admission import QueueRoom
from gradlight.runtime.execution.batcher import DynamicBatcher
from gradlight.runtime.explanation.attributor import Attributor
from gradlight.runtime.explanation.requests import AttributeOptions
from gradlight.runtime.serving.server import ServerSettings
from gradlight.runtime.settings import BatchSettings
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1.gradlight_pb2_grpc import AttributorStub


def test_room_is_held_grown_queued_and_released():
    room = QueueRoom(limit=8)
    big = room.admit(20)  # an empty queue takes a request whole, whatever its size
    assert room.waiting == 20
    with pytest.raises(QueueFullError, match="20 rows waiting, limit 8, this request needs 1"):
        room.admit(1)
    big.resize(30)  # planned: its own rows never refuse it while nothing else waits
    big.queue(15)
    assert (room.queued, room.held) == (15, 15)
    big.release()
    assert (room.queued, room.held) == (15, 0)
    room.dequeued(15)
    small = room.admit(3)
    with pytest.raises(QueueFullError):
        room.admit(6)
    other = room.admit(5)
    with pytest.raises(QueueFullError, match="5 rows waiting, limit 8, this request needs 4"):
        small.resize(4)  # growing past the limit next to another request is refused
    assert small.rows == 3
    small.resize(2)
    other.release()
    small.release()
    assert room.waiting == 0


def test_a_release_waits_for_the_work_it_is_held_for():
    async def scenario():
        room = QueueRoom(limit=8)
        admission = room.admit(4)
        work = asyncio.get_running_loop().create_future()
        admission.release_when_done(work)
        admission.release()  # the request is gone, its thread is not
        held = room.waiting
        work.set_result(None)
        await asyncio.sleep(0)
        return held, room.waiting

    assert asyncio.run(scenario()) == (4, 0)


def test_a_request_bigger_than_the_queue_is_admitted_whole_into_an_empty_one(engine_for):
    """Its forward rows (3 texts and their 9 sentence variants) must not refuse its own
    attribution rows, as they did when each graph's rows were checked on their own."""
    settings = ServerSettings(port=0, batch=BatchSettings(max_queue_size=8))
    texts = [f"Note {i}. The patient denies chest pain. No fever. Seen today." for i in range(3)]
    with (
        ServerThread({"bert": engine_for("bert")}, settings) as server,
        Client(server.address) as client,
    ):
        response = client.attribute(texts, sentence_attributions=True)
        assert [result.text for result in response.results] == texts
        assert all(len(result.sentences) == 4 for result in response.results)
        assert server.running.registry.models["bert"].batcher.waiting_rows == 0


def test_a_request_cancelled_while_tokenizing_keeps_its_room_until_the_thread_ends(engine_for):
    engine = engine_for("bert")
    text = "The patient denies chest pain. " * 150_000  # a few hundred ms to tokenize

    async def scenario():
        batcher = DynamicBatcher(engine, BatchSettings(max_queue_size=8))
        batcher.start()
        attributor = Attributor(engine, batcher, max_texts=256)
        options = AttributeOptions(sentence_attributions=True)
        request = asyncio.ensure_future(attributor.run([text], options))
        await asyncio.sleep(0.05)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        held_after_cancel = batcher.waiting_rows
        for _ in range(600):
            if batcher.waiting_rows == 0:
                break
            await asyncio.sleep(0.05)
        released = batcher.waiting_rows
        await batcher.close()
        return held_after_cancel, released

    held_after_cancel, released = asyncio.run(scenario())
    assert held_after_cancel == 1  # the text's row, while its thread still tokenizes
    assert released == 0


def test_a_full_queue_refuses_at_the_door_over_grpc(engine_for):
    settings = ServerSettings(
        port=0, batch=BatchSettings(max_queue_size=2, max_wait_ms=1000, max_batch_size=64)
    )
    with ServerThread({"bert": engine_for("bert")}, settings) as server:
        channel = grpc.insecure_channel(server.address)
        stub = AttributorStub(channel)
        waiting = stub.Predict.future(pb.PredictRequest(texts=["One.", "Two."]))
        for _ in range(100):
            if server.running.registry.models["bert"].batcher.waiting_rows == 2:
                break
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(pb.PredictRequest(texts=["Three."]), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "this request needs 1" in info.value.details()
        assert len(waiting.result(timeout=30).results) == 2
        channel.close()


def _tokenized(server) -> float:
    """How many requests the server has tokenized (``gradlight_tokenize_seconds``' count)."""
    metric = server.running.registry.metrics.tokenize_seconds
    return sum(s.value for m in metric.collect() for s in m.samples if s.name.endswith("_count"))


def test_a_path_request_is_refused_whole_before_anything_sized_by_it_is_made(engine_for):
    """GradientSHAP's rows at their most (8 texts x (16 samples, each one path labels row of 3
    labels weighing 3, + the baseline's row, the forward alone weighing 1): 392) are held at the
    door: with another request's 50 rows queued (limit 440) they are refused before the texts
    are tokenized or any noise is drawn; alone, the request is admitted."""
    settings = ServerSettings(
        port=0, batch=BatchSettings(max_queue_size=440, max_wait_ms=1000, max_batch_size=64)
    )
    texts = [f"Note {i}: the patient denies chest pain." for i in range(8)]
    request = pb.AttributeRequest(
        texts=texts, token_attributions=True, method="gradient_shap", samples=16
    )
    with ServerThread({"bert": engine_for("bert")}, settings) as server:
        channel = grpc.insecure_channel(server.address)
        stub = AttributorStub(channel)
        waiting = stub.Predict.future(pb.PredictRequest(texts=[f"Text {i}." for i in range(50)]))
        batcher = server.running.registry.models["bert"].batcher
        for _ in range(500):  # admitted at the door, then tokenized: wait for both
            if batcher.waiting_rows == 50 and _tokenized(server) == 1:
                break
            time.sleep(0.01)
        tokenized = _tokenized(server)
        assert tokenized == 1
        with pytest.raises(grpc.RpcError) as info:
            stub.Attribute(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "this request needs 392" in info.value.details()
        assert _tokenized(server) == tokenized  # refused before its texts were tokenized
        assert len(waiting.result(timeout=30).results) == 50
        assert len(stub.Attribute(request, timeout=60).results) == 8  # alone it is admitted
        assert batcher.waiting_rows == 0
        channel.close()
