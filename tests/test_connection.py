"""The one definition of a client's connection (client/connection.py): gRPC's own retries,
proved against a real grpc.aio server on a loopback port that answers as scripted (the server
side's contract: UNAVAILABLE and RESOURCE_EXHAUSTED are retried with backoff, and
``grpc-retry-pushback-ms: -1`` stops the retries of a refusal that waiting cannot fix), and
what the connection shows and refuses."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import grpc
import pytest

from gradlight.bulk.backends import BackendError, ServerBackend
from gradlight.client import Client, Connection, RetryPolicy
from gradlight.client.connection import connection_for
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc

TOKEN = "s3cret-token-for-the-tests"
FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@dataclass
class Refusal:
    code: grpc.StatusCode
    pushback_ms: str | None = None  # grpc-retry-pushback-ms, sent as trailing metadata


@dataclass
class Scripted(pb_grpc.AttributorServicer):
    """Refuses the first calls as scripted (the last refusal repeats with ``forever``), then
    answers; records when each call came and the authorization it carried."""

    refusals: list[Refusal]
    forever: bool = False
    arrivals: list[float] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    async def _answer(self, context: grpc.aio.ServicerContext) -> None:
        self.arrivals.append(time.monotonic())
        metadata = dict(context.invocation_metadata() or ())
        self.authorizations.append(metadata.get("authorization", ""))
        index = len(self.arrivals) - 1
        if index < len(self.refusals) or (self.forever and self.refusals):
            refusal = self.refusals[min(index, len(self.refusals) - 1)]
            trailing = ()
            if refusal.pushback_ms is not None:
                trailing = (("grpc-retry-pushback-ms", refusal.pushback_ms),)
            await context.abort(refusal.code, f"scripted {refusal.code.name}", trailing)

    async def ListModels(self, request, context):
        await self._answer(context)
        return pb.ListModelsResponse(models=[pb.ModelInfo(name="scripted", labels=["a", "b"])])

    async def Attribute(self, request, context):
        await self._answer(context)
        return pb.AttributeResponse(results=[pb.TextResult(text=text) for text in request.texts])

    @property
    def calls(self) -> int:
        return len(self.arrivals)


class ScriptedServer:
    """A grpc.aio server with ``servicer`` on a loopback port, in a thread's event loop."""

    def __init__(self, servicer: Scripted) -> None:
        self.servicer = servicer
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        self.port = self._call(self._start())
        return self

    async def _start(self) -> int:
        self.server = grpc.aio.server()
        pb_grpc.add_AttributorServicer_to_server(self.servicer, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self._call(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def _refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _client(server: ScriptedServer, **connection) -> Client:
    connection.setdefault("retry", FAST)
    return Client(connection=Connection(server.address, token=TOKEN, **connection), timeout=20)


def test_unavailable_twice_then_ok_is_answered_after_two_retries():
    servicer = Scripted([Refusal(UNAVAILABLE), Refusal(UNAVAILABLE)])
    with ScriptedServer(servicer) as server, _client(server) as client:
        assert client.list_models().models[0].name == "scripted"
    assert servicer.calls == 3
    assert servicer.authorizations == [f"Bearer {TOKEN}"] * 3  # every attempt carries it


def test_a_full_queue_is_retried_until_max_attempts_then_reported():
    servicer = Scripted([Refusal(EXHAUSTED)], forever=True)
    with ScriptedServer(servicer) as server, _client(server) as client:
        refused = _refused(lambda: client.attribute(["text"]))
    assert refused.code() == EXHAUSTED
    assert servicer.calls == FAST.max_attempts


def test_pushback_minus_one_stops_the_retries_of_what_waiting_cannot_fix():
    servicer = Scripted([Refusal(EXHAUSTED, "-1")], forever=True)
    with ScriptedServer(servicer) as server, _client(server) as client:
        refused = _refused(lambda: client.attribute(["a text whose answer is too large"]))
        time.sleep(0.3)  # no late retry either
    assert refused.code() == EXHAUSTED
    assert refused.details() == "scripted RESOURCE_EXHAUSTED"
    assert servicer.calls == 1


def test_a_positive_pushback_says_how_long_to_wait():
    servicer = Scripted([Refusal(EXHAUSTED, "400")])
    with ScriptedServer(servicer) as server, _client(server) as client:
        assert client.attribute(["text"]).results[0].text == "text"
    assert servicer.calls == 2
    # The policy's own backoff is at most 0.05 s: the wait is the server's pushback.
    assert servicer.arrivals[1] - servicer.arrivals[0] >= 0.35


def test_other_codes_and_a_connection_without_retries_are_sent_once():
    servicer = Scripted([Refusal(grpc.StatusCode.INVALID_ARGUMENT)])
    with ScriptedServer(servicer) as server, _client(server) as client:
        refused = _refused(lambda: client.attribute(["text"]))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert servicer.calls == 1
    servicer = Scripted([Refusal(UNAVAILABLE)])
    with ScriptedServer(servicer) as server, _client(server, retry=None) as client:
        refused = _refused(client.list_models)
    assert refused.code() == UNAVAILABLE
    assert servicer.calls == 1


def test_the_bulk_backend_retries_on_its_asyncio_channel():
    servicer = Scripted([Refusal(UNAVAILABLE), Refusal(EXHAUSTED, "10")])

    async def scenario(address: str) -> tuple[str, grpc.StatusCode]:
        connection = Connection(address, token=TOKEN, round_robin=True, retry=FAST)
        backend = ServerBackend(connection=connection)
        try:
            facts = await backend.start()
            servicer.refusals = [Refusal(EXHAUSTED, "-1")]
            servicer.forever = True
            servicer.arrivals.clear()
            with pytest.raises(BackendError) as caught:
                await backend.attribute(pb.AttributeRequest(texts=["text"]))
            return facts.name, caught.value.code
        finally:
            await backend.close()

    with ScriptedServer(servicer) as server:
        name, code = asyncio.run(scenario(server.address))
    assert name == "scripted"
    assert code == EXHAUSTED and servicer.calls == 1
    assert set(servicer.authorizations) == {f"Bearer {TOKEN}"}


def test_the_service_config_holds_the_retry_policy_and_load_balancing():
    connection = Connection("dns:///replicas:50051", round_robin=True)
    options = dict(connection.options())
    assert options["grpc.enable_retries"] == 1
    assert options["grpc.max_receive_message_length"] == 64 * 1024 * 1024
    config = json.loads(options["grpc.service_config"])
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": "gradlight.v1.Attributor"}]
    assert method["retryPolicy"] == {
        "maxAttempts": 5,
        "initialBackoff": "0.2s",
        "maxBackoff": "5s",
        "backoffMultiplier": 2.0,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
    }
    plain = dict(Connection(retry=None).options())
    assert plain["grpc.enable_retries"] == 0 and "grpc.service_config" not in plain


def test_the_token_is_checked_and_never_shown():
    connection = Connection("host:1", token=f"  {TOKEN}\n", root_certificates=b"PEM")
    assert connection.token == TOKEN and connection.tls  # given roots turn TLS on
    assert connection.metadata == (("authorization", f"Bearer {TOKEN}"),)
    assert TOKEN not in repr(connection) and "PEM" not in repr(connection)
    for bad in ("two words", "", "caf\u00e9", "tab\there"):
        # The message never shows the token: it is exactly this.
        with pytest.raises(ValueError, match=r"^token must be printable ASCII without spaces$"):
            Connection(token=bad)
    with pytest.raises(ValueError, match="between 2 and 5"):
        RetryPolicy(max_attempts=6)
    with pytest.raises(ValueError, match="initial_backoff_s"):
        RetryPolicy(initial_backoff_s=0)


def test_a_connection_or_its_parts_not_both():
    connection = Connection("host:1")
    assert connection_for(connection, None) is connection
    assert connection_for(connection, "host:1") is connection
    with pytest.raises(ValueError, match="either connection or tls/tls_ca/token"):
        connection_for(connection, None, token=TOKEN)
    with pytest.raises(ValueError, match="differs"):
        Client("other:2", connection=connection)
    with pytest.raises(ValueError, match="a channel brings its own"):
        Client(channel=grpc.insecure_channel("host:1"), connection=connection)
    made = connection_for(None, "host:1", tls_ca="-----BEGIN CERTIFICATE-----\n", token=TOKEN)
    assert made.tls and made.root_certificates.startswith(b"-----BEGIN")


def test_the_client_imports_neither_the_runtime_nor_torch():
    script = (
        "import sys; import gradlight.client, gradlight.client.connection; "
        "print(sorted(m for m in sys.modules if m.startswith('gradlight.runtime') "
        "or m.split('.')[0] in ('torch', 'onnxruntime')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
