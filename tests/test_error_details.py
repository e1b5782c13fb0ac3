"""Errors a program can read: every refusal carries its reason, the offending field with its
index and, where a retry may get past it, a retry delay, as google.rpc details over gRPC and as
JSON over HTTP (runtime/serving/status.py); the client reads them back (wire/error_details.py)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from http_json import request, request_json
from serving import ServerThread

from gradlight.runtime.serving.server import ServerSettings
from gradlight.runtime.settings import BatchSettings, ServiceLimits
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1.gradlight_pb2_grpc import AttributorStub
from gradlight.wire.error_details import error_details

TEXT = "The patient denies chest pain."


def _refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _details(error: grpc.RpcError) -> dict[str, object]:
    """The google.rpc details of a refusal, unpacked by type, and the retry pushback."""
    metadata = dict(error.trailing_metadata())
    status = status_pb2.Status.FromString(metadata["grpc-status-details-bin"])
    found: dict[str, object] = {"pushback": metadata.get("grpc-retry-pushback-ms")}
    for kind in (
        error_details_pb2.ErrorInfo,
        error_details_pb2.BadRequest,
        error_details_pb2.RetryInfo,
    ):
        for packed in status.details:
            if packed.Is(kind.DESCRIPTOR):
                found[kind.__name__] = kind()
                packed.Unpack(found[kind.__name__])
    assert status.code == error.code().value[0] and status.message == error.details()
    return found


@pytest.fixture(scope="module")
def stub(tiny_server):
    """A plain stub: no retries, nothing between the test and the server's answer."""
    channel = grpc.insecure_channel(tiny_server.address)
    yield AttributorStub(channel)
    channel.close()


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"texts": [TEXT, "  "]}, "texts[1]"),
        ({"texts": [TEXT], "labels": ["label_0", "nope"]}, "labels[1]"),
        ({"texts": [TEXT], "max_length": -1}, "max_length"),
        (
            {
                "texts": [TEXT, TEXT],
                "entities": [
                    pb.TextEntities(),
                    pb.TextEntities(spans=[pb.EntitySpan(start=5, end=99)]),
                ],
            },
            "entities[1].spans[0]",
        ),
    ],
)
def test_an_invalid_field_is_named_with_its_index(stub, request_fields, field):
    message = pb.AttributeRequest(model="bert", token_attributions=True, **request_fields)
    error = _refusal(lambda: stub.Attribute(message))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = _details(error)
    info, bad = found["ErrorInfo"], found["BadRequest"]
    assert (info.reason, info.domain, info.metadata["field"]) == (
        "INVALID_FIELD",
        "gradlight.v1",
        field,
    )
    assert [v.field for v in bad.field_violations] == [field]
    assert error.details() == f"{field}: {bad.field_violations[0].description}"
    assert "RetryInfo" not in found and found["pushback"] is None
    read = error_details(error)
    assert (read.reason, read.field, read.retryable) == ("INVALID_FIELD", field, False)


def test_an_unknown_model_is_not_found_naming_the_model_field(stub):
    error = _refusal(lambda: stub.Predict(pb.PredictRequest(model="gpt", texts=[TEXT])))
    read = error_details(error)
    assert (read.code, read.reason, read.field) == (
        grpc.StatusCode.NOT_FOUND,
        "MODEL_NOT_FOUND",
        "model",
    )
    assert "BadRequest" not in _details(error)  # not an argument error


def test_a_stream_names_the_request_and_its_field(stub):
    stream = stub.AttributeStream(
        iter(
            [
                pb.AttributeRequest(model="bert", texts=[TEXT]),
                pb.AttributeRequest(model="bert", texts=[TEXT, ""], token_attributions=True),
            ]
        )
    )
    assert next(stream).results[0].text == TEXT
    read = error_details(_refusal(lambda: next(stream)))
    assert (read.reason, read.field) == ("INVALID_FIELD", "requests[1].texts[1]")


def test_a_full_queue_says_when_to_retry(engine_for):
    settings = ServerSettings(
        port=0, batch=BatchSettings(max_queue_size=2, max_wait_ms=500, max_batch_size=64)
    )
    with ServerThread({"bert": engine_for("bert")}, settings) as server:
        stub = AttributorStub(grpc.insecure_channel(server.address))
        first = threading.Thread(target=lambda: stub.Predict(pb.PredictRequest(texts=[TEXT, TEXT])))
        first.start()
        time.sleep(0.15)  # the first request waits in the queue for companions
        error = _refusal(lambda: stub.Predict(pb.PredictRequest(texts=[TEXT])))
        first.join()
    found = _details(error)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert found["ErrorInfo"].reason == "QUEUE_FULL"
    delay = found["RetryInfo"].retry_delay.ToNanoseconds() / 1e9
    assert 0 < delay <= 5 and int(found["pushback"]) == round(delay * 1000)
    assert error_details(error).retry_after_s == pytest.approx(delay)


def test_an_answer_too_large_says_a_retry_cannot_help(engine_for):
    settings = ServerSettings(
        port=0, http_port=0, limits=ServiceLimits(max_send_message_bytes=2048)
    )
    with ServerThread({"bert": engine_for("bert")}, settings) as server:
        stub = AttributorStub(grpc.insecure_channel(server.address))
        big = pb.AttributeRequest(texts=[TEXT * 4] * 3, token_attributions=True, raw_scores=True)
        error = _refusal(lambda: stub.Attribute(big))
        status, headers, payload = request(
            server.http_url + "v1/attribute",
            {"texts": [TEXT * 4] * 3, "token_attributions": True, "raw_scores": True},
        )
        small_status, _ = request_json(server.http_url + "v1/predict", {"texts": ["Short."]})
    found = _details(error)
    assert found["ErrorInfo"].reason == "RESPONSE_TOO_LARGE" and "RetryInfo" not in found
    assert found["pushback"] == "-1"  # gRPC's own retries stop (gRFC A6)
    assert not error_details(error).retryable
    # HTTP refuses its own over-limit answers the same way (its JSON is measured).
    import json

    body = json.loads(payload)["error"]
    assert status == 429 and "Retry-After" not in headers
    assert body["code"] == "RESOURCE_EXHAUSTED" and body["reason"] == "RESPONSE_TOO_LARGE"
    assert (
        "over this server's limit of 2048 bytes" in body["message"]
        and body["retry_after_s"] is None
    )
    assert small_status == 200


def test_http_errors_carry_the_same_reason_and_field(tiny_server):
    url = tiny_server.http_url
    status, answer = request_json(
        url + "v1/attribute", {"model": "bert", "texts": [TEXT, " "], "token_attributions": True}
    )
    assert status == 400
    assert answer["error"] == {
        "code": "INVALID_ARGUMENT",
        "message": answer["error"]["message"],
        "reason": "INVALID_FIELD",
        "field": "texts[1]",
        "retry_after_s": None,
    }
    assert answer["error"]["message"].startswith("texts[1]: ")
    status, answer = request_json(
        url + "v1/predict", {"model": "bert", "texts": [TEXT], "nonsense": 1}
    )
    assert (status, answer["error"]["field"]) == (400, "nonsense")
    status, answer = request_json(url + "v1/predict", {"model": "gpt", "texts": [TEXT]})
    assert (status, answer["error"]["reason"], answer["error"]["field"]) == (
        404,
        "MODEL_NOT_FOUND",
        "model",
    )
    status, answer = request_json(url + "v1/predict", b"{", content_type="text/plain")
    assert (status, answer["error"]["field"]) == (415, "Content-Type")
    status, answer = request_json(url + "v1/nothing")
    assert (status, answer["error"]["reason"], answer["error"]["field"]) == (
        404,
        "NO_SUCH_ROUTE",
        None,
    )
