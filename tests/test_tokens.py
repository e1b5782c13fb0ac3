"""Bearer tokens on the real servers (gRPC and HTTP on loopback ports, real channels): every
method, stream and route refuses a call without an accepted token, health and the page stay
public, every token of the file works, and no token ever reaches an answer, the log or a repr.
TLS: tests/test_tls.py; what is checked at start: tests/test_security_startup.py."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from secure_serving import (
    CHALLENGE,
    SECOND,
    TEXT,
    TOKEN,
    WRONG,
    http_answer,
    rpc_error_code,
    start_server,
    trusting,
)

from gradlight.client import Client
from gradlight.runtime.serving.grpc_auth import BearerTokenInterceptor
from gradlight.runtime.serving.security import TokenSet
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc

# ---- tokens on gRPC ----


def _grpc_calls(channel, metadata):
    """Each Attributor method, called with ``metadata``; returns what it answered."""
    stub = pb_grpc.AttributorStub(channel)
    request = pb.AttributeRequest(texts=[TEXT], token_attributions=True)
    return {
        "Predict": lambda: stub.Predict(pb.PredictRequest(texts=[TEXT]), metadata=metadata),
        "Attribute": lambda: stub.Attribute(request, metadata=metadata),
        "AttributeStream": lambda: list(
            stub.AttributeStream(iter([request, request]), metadata=metadata, timeout=30)
        ),
        "ListModels": lambda: stub.ListModels(pb.ListModelsRequest(), metadata=metadata),
    }


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {WRONG}", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"],
    ids=["none", "wrong", "not-bearer", "empty", "longer"],
)
def test_grpc_methods_refuse_calls_without_an_accepted_token(auth_server, authorization):
    metadata = [] if authorization is None else [("authorization", authorization)]
    with grpc.insecure_channel(auth_server.address) as channel:
        for method, call in _grpc_calls(channel, metadata).items():
            with pytest.raises(grpc.RpcError) as caught:
                call()
            error = caught.value
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, method
            assert "authorization: Bearer <token>" in error.details()
            assert TOKEN not in error.details() and WRONG not in error.details()
        # Reflection lists the services: behind the token too.
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as caught:
            list(reflection.ServerReflectionInfo(iter([listing]), metadata=metadata, timeout=30))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_grpc_health_is_public_and_the_right_tokens_work(auth_server):
    with grpc.insecure_channel(auth_server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        checked = health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=30)  # unary-stream
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        for token in (TOKEN, SECOND):  # every token of the file
            answers = _grpc_calls(channel, [("authorization", f"Bearer {token}")])
            assert answers["Predict"]().results[0].text == TEXT
            assert answers["Attribute"]().results[0].tokens
            assert len(answers["AttributeStream"]()) == 2
            assert [model.name for model in answers["ListModels"]().models] == ["bert"]
        # The scheme is case-insensitive (RFC 7235).
        answers = _grpc_calls(channel, [("authorization", f"bearer {TOKEN}")])
        assert answers["Predict"]().results[0].text == TEXT
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = list(
            reflection.ServerReflectionInfo(
                iter([listing]), metadata=[("authorization", f"Bearer {TOKEN}")], timeout=30
            )
        )
        services = {service.name for service in answers[0].list_services_response.service}
        assert "gradlight.v1.Attributor" in services
    with Client(auth_server.address, token=TOKEN) as client:
        assert client.health() == "SERVING"
        assert client.attribute([TEXT], sentence_attributions=True).results[0].sentences
        assert len(list(client.attribute_stream([pb.AttributeRequest(texts=[TEXT])] * 3))) == 3
        assert client.list_models().models[0].name == "bert"
    with Client(auth_server.address) as anonymous:
        assert anonymous.health() == "SERVING"
        assert rpc_error_code(anonymous.list_models) == grpc.StatusCode.UNAUTHENTICATED
    with Client(auth_server.address, token=WRONG) as wrong:
        assert rpc_error_code(lambda: wrong.predict([TEXT])) == grpc.StatusCode.UNAUTHENTICATED


def test_the_refusal_matches_every_rpc_kind():
    """Unary and streaming in both directions: each refused call gets UNAUTHENTICATED from a
    handler of its own kind (no hang, no INTERNAL); accepted calls reach the real handler."""

    async def unary_unary(request, context):
        return request

    async def unary_stream(request, context):
        yield request
        yield request

    async def stream_unary(requests, context):
        return b"".join([request async for request in requests])

    async def stream_stream(requests, context):
        async for request in requests:
            yield request

    handlers = {
        "UnaryUnary": grpc.unary_unary_rpc_method_handler(unary_unary),
        "UnaryStream": grpc.unary_stream_rpc_method_handler(unary_stream),
        "StreamUnary": grpc.stream_unary_rpc_method_handler(stream_unary),
        "StreamStream": grpc.stream_stream_rpc_method_handler(stream_stream),
    }

    async def run() -> None:
        server = grpc.aio.server(interceptors=[BearerTokenInterceptor(TokenSet([TOKEN]))])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.K", handlers)])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await _check_kinds(channel)
        finally:
            await server.stop(None)

    asyncio.run(run())


async def _check_kinds(channel: grpc.aio.Channel) -> None:
    accepted = (("authorization", f"Bearer {TOKEN}"),)
    refused = ((), (("authorization", f"Bearer {WRONG}"),))
    for kind, method in (
        ("UnaryUnary", channel.unary_unary("/t.K/UnaryUnary")),
        ("UnaryStream", channel.unary_stream("/t.K/UnaryStream")),
    ):
        for metadata in refused:
            call = method(b"x", metadata=metadata, timeout=10)
            assert await call.code() == grpc.StatusCode.UNAUTHENTICATED, kind
            assert "authorization: Bearer <token>" in await call.details()
    assert await channel.unary_unary("/t.K/UnaryUnary")(b"x", metadata=accepted) == b"x"
    answers = channel.unary_stream("/t.K/UnaryStream")(b"x", metadata=accepted)
    assert [answer async for answer in answers] == [b"x", b"x"]
    # Request streams: the refused calls send nothing (an aio client's write into a call the
    # server has already ended is reported INTERNAL by the client itself, grpc/grpc#36066).
    for kind, method in (
        ("StreamUnary", channel.stream_unary("/t.K/StreamUnary")),
        ("StreamStream", channel.stream_stream("/t.K/StreamStream")),
    ):
        for metadata in refused:
            call = method(metadata=metadata, timeout=10)
            assert await call.code() == grpc.StatusCode.UNAUTHENTICATED, kind
            assert "authorization: Bearer <token>" in await call.details()
    answer = channel.stream_unary("/t.K/StreamUnary")(iter([b"a", b"b"]), metadata=accepted)
    assert await answer == b"ab"
    answers = channel.stream_stream("/t.K/StreamStream")(iter([b"a", b"b"]), metadata=accepted)
    assert [answer async for answer in answers] == [b"a", b"b"]
    # An unknown method is UNIMPLEMENTED, with or without a token.
    call = channel.unary_unary("/t.K/Nothing")(b"x", timeout=10)
    assert await call.code() == grpc.StatusCode.UNIMPLEMENTED


def test_tokens_never_reach_the_log_or_a_repr(engine_for, token_file, pki, caplog):
    caplog.set_level("DEBUG")
    server = start_server(
        engine_for, auth_token_file=token_file, tls_cert=pki.cert, tls_key=pki.key
    )
    try:
        with Client(server.address, tls_ca=pki.cert, token=TOKEN) as client:
            client.attribute([TEXT])
        with Client(server.address, tls_ca=pki.cert, token=WRONG) as client:
            assert rpc_error_code(lambda: client.predict([TEXT])) == grpc.StatusCode.UNAUTHENTICATED
        for token in (TOKEN, WRONG, None):
            http_answer(server.http_url + "v1/models", token=token, context=trusting(pki))
        running = server.running
        for shown in (repr(running.security), repr(running.settings), str(vars(running))):
            assert TOKEN not in shown and SECOND not in shown
    finally:
        server.stop()
    log = caplog.text
    assert "security: TLS on (certificate" in log
    assert f"authentication on (2 bearer tokens from {token_file})" in log
    assert "refused" in log  # the refusals are logged (at debug), without what was sent
    for secret in (TOKEN, SECOND, WRONG):
        assert secret not in log


# ---- tokens on HTTP ----


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("v1/attribute", {"texts": [TEXT], "token_attributions": True}),
        ("v1/predict", {"texts": [TEXT]}),
        ("v1/models", None),
        ("v1/nothing", None),  # unknown routes too: nothing is learnt without a token
    ],
)
def test_http_api_refuses_requests_without_an_accepted_token(auth_server, path, body):
    url = auth_server.http_url + path
    for authorization in (None, f"Bearer {WRONG}", f"Basic {TOKEN}", "Bearer "):
        status, headers, answer = http_answer(url, body, authorization=authorization)
        assert status == 401, authorization
        assert headers["WWW-Authenticate"] == CHALLENGE
        assert answer["error"]["code"] == "UNAUTHENTICATED"
        assert "authorization: Bearer <token>" in answer["error"]["message"]
        assert TOKEN not in json.dumps(answer) and WRONG not in json.dumps(answer)
    status, _, answer = http_answer(url, body, token=TOKEN)
    assert status == (404 if path == "v1/nothing" else 200)


def test_http_page_and_health_are_public_and_the_right_tokens_work(auth_server):
    url = auth_server.http_url
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200 and b"Access token" in response.read()
    assert http_answer(url + "healthz")[0::2] == (200, {"status": "SERVING"})
    assert http_answer(url + "favicon.ico")[0] == 204
    for token in (TOKEN, SECOND):
        body = {"texts": [TEXT], "token_attributions": True}
        status, _, answer = http_answer(url + "v1/attribute", body, token=token)
        assert status == 200 and answer["results"][0]["tokens"]
        status, _, answer = http_answer(url + "v1/models", token=token)
        assert status == 200 and answer["models"][0]["name"] == "bert"
    status, _, _ = http_answer(url + "v1/models", authorization=f"bearer {TOKEN}")
    assert status == 200
