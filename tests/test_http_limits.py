"""The HTTP server's connection limits, on the real server over loopback sockets: idle,
header and body timeouts, the cap on open connections, ``/healthz`` answering while a large
request is worked on, the Host check on any loopback address, and 401s in the metrics; and
the bounded JSON decoding and encoding behind them, against the json module."""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import socket
import threading
import time

import pytest
from http_json import request
from secure_serving import TOKEN, start_server

from gradlight.runtime.serving import json_messages
from gradlight.runtime.serving.http_limits import HttpLimits
from gradlight.runtime.serving.loopback import binds_loopback

TEXT = "The patient denies chest pain. No evidence of pneumonia."


def _metric(url: str, name: str, token: str | None = None, **labels: str) -> float:
    """A sample's value from ``/metrics`` (0 when absent)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    _, _, payload = request(url + "metrics", headers=headers)
    for line in payload.decode().splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or "")) == labels:
            return float(match.group(2))
    return 0.0


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.running.http.port), timeout=5)


def _closed_after(sock: socket.socket, limit: float = 5.0) -> float:
    """Seconds until the server closes ``sock`` (reading and dropping what it sends)."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def _client_errors(caplog) -> list[logging.LogRecord]:
    """gradlight's log records at INFO and above; none of any logger above INFO, or with a
    traceback."""
    loud = [r for r in caplog.records if r.exc_info or r.levelno > logging.INFO]
    assert not loud, [r.getMessage() for r in loud]
    return [r for r in caplog.records if r.name.startswith("gradlight") and r.levelno >= 20]


@pytest.fixture(scope="module")
def short_server(engine_for):
    """The tiny BERT behind short timeouts (the idle one the longest, so that it does not end
    a request head first) and a cap of 4 connections."""
    limits = HttpLimits(
        header_timeout_s=0.4, body_timeout_s=0.4, idle_timeout_s=1.0, max_connections=4
    )
    server = start_server(engine_for, http=limits)
    yield server
    server.stop()


def test_idle_connections_are_closed_after_the_idle_timeout(short_server):
    fresh = [_connect(short_server) for _ in range(2)]  # connected, nothing sent
    used = http.client.HTTPConnection("127.0.0.1", short_server.running.http.port, timeout=5)
    used.request("GET", "/healthz")  # one answered request, then idle on keep-alive
    assert used.getresponse().read() == b'{"status": "SERVING"}'
    started = time.monotonic()
    for sock in [*fresh, used.sock]:
        assert _closed_after(sock) < 3.0
    assert time.monotonic() - started >= 0.8  # not at once: after the idle timeout
    for sock in fresh:
        sock.close()
    used.close()


def test_a_partial_header_is_closed_after_the_header_timeout(short_server, caplog):
    caplog.set_level(logging.INFO, logger="gradlight")
    url = short_server.http_url
    before = _metric(url, "gradlight_http_client_errors_total", reason="header_timeout")
    with _connect(short_server) as sock:
        time.sleep(0.3)  # idle a while first: the header timeout starts at the first byte
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        took = _closed_after(sock)
    assert 0.3 <= took < 0.9  # the header timeout's 0.4 s from the first byte, before idle's
    after = _metric(url, "gradlight_http_client_errors_total", reason="header_timeout")
    assert after == before + 1
    records = [r for r in _client_errors(caplog) if "request head" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert records[0].exc_info is None and "--http-header-timeout" in records[0].getMessage()


def test_a_trickled_body_gets_408_and_is_closed_as_a_client_error(short_server, caplog):
    caplog.set_level(logging.INFO, logger="gradlight")
    url = short_server.http_url
    before = _metric(url, "gradlight_http_client_errors_total", reason="body_timeout")
    with _connect(short_server) as sock:
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.1)
        while time.monotonic() - started < 3:
            try:
                sock.sendall(b" ")  # a byte every 0.1 s: never the whole body in time
            except OSError:
                break
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
        took = time.monotonic() - started
    assert 0.3 <= took < 2.5
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["field"] == "body" and "--http-body-timeout" in body["error"]["message"]
    after = _metric(url, "gradlight_http_client_errors_total", reason="body_timeout")
    assert after == before + 1
    records = _client_errors(caplog)
    assert [r.levelno for r in records] == [logging.INFO], [r.getMessage() for r in records]
    assert records[0].exc_info is None and "--http-body-timeout" in records[0].getMessage()


def test_a_body_broken_off_is_a_client_error_without_a_traceback(short_server, caplog):
    caplog.set_level(logging.INFO, logger="gradlight")
    url = short_server.http_url
    before = _metric(url, "gradlight_http_client_errors_total", reason="body_incomplete")
    with _connect(short_server) as sock:
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"texts"'
        )
        time.sleep(0.1)  # the server reads the head and part of the body, then the client goes
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        after = _metric(url, "gradlight_http_client_errors_total", reason="body_incomplete")
        if after > before:
            break
        time.sleep(0.05)
    assert after == before + 1
    records = _client_errors(caplog)
    assert len(records) == 1 and "broken off" in records[0].getMessage()


def test_a_connection_over_the_cap_is_refused_while_the_others_work(short_server):
    url = short_server.http_url
    port = short_server.running.http.port
    refused_before = _metric(url, "gradlight_http_connections_refused_total")
    time.sleep(0.1)  # the server closes that request's connection
    working = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(4)]
    for connection in working:  # four open: the cap
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() == b'{"status": "SERVING"}'
    with _connect(short_server) as extra:  # the fifth: answered 503 at once, and closed
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        extra.settimeout(2.0)
        answer = b""
        while data := extra.recv(65536):
            answer += data
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nRetry-After: 1\r\n" in head and b"\r\nConnection: close" in head
    error = json.loads(body)["error"]
    assert error["reason"] == "QUEUE_FULL" and "4 HTTP connections" in error["message"]
    for connection in working:  # the four still work
        connection.request("GET", "/v1/models")
        assert connection.getresponse().read().startswith(b'{"models": ')
    working.pop().close()
    time.sleep(0.1)  # the server sees the close
    assert _metric(url, "gradlight_http_connections_refused_total") == refused_before + 1
    for connection in working:
        connection.close()


LARGE = {  # the largest request the default limits allow: 256 texts, every output
    "model": "bert",
    "texts": [f"{TEXT} {i} " * 20 for i in range(256)],
    "token_attributions": True,
    "raw_scores": True,
    "sentence_attributions": True,
}


def _probed(server) -> list[float]:
    """``/healthz`` latencies, probed every 10 ms while LARGE is worked on."""
    asked: dict[str, tuple] = {}
    large = threading.Thread(
        target=lambda: asked.update(answer=request(server.http_url + "v1/attribute", LARGE))
    )
    probe = http.client.HTTPConnection("127.0.0.1", server.running.http.port, timeout=5)
    probe.request("GET", "/healthz")
    probe.getresponse().read()
    large.start()
    latencies = []
    while large.is_alive():
        started = time.perf_counter()
        probe.request("GET", "/healthz")
        assert probe.getresponse().read() == b'{"status": "SERVING"}'
        latencies.append(time.perf_counter() - started)
        time.sleep(0.01)
    large.join()
    probe.close()
    status, _, payload = asked["answer"]
    assert status == 200 and len(json.loads(payload)["results"]) == 256
    assert len(latencies) >= 20  # the probes ran while the request was worked on
    return latencies


def test_healthz_answers_within_100_ms_while_a_large_request_is_worked_on(engine_for):
    """Before, /healthz waited about 2 s here, every time (the answer's JSON made on the event
    loop). Another process's load can stall one run (CI's 2 cores): the best of three counts."""
    server = start_server(engine_for)
    try:
        worst = []
        for _ in range(3):
            worst.append(max(_probed(server)))
            if worst[-1] < 0.1:
                break
    finally:
        server.stop()
    assert min(worst) < 0.1, worst


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("::1", True),
        ("[::1]", True),
        ("0:0:0:0:0:0:0:1", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("192.0.2.1", False),
    ],
)
def test_any_loopback_spelling_binds_loopback(host, loopback):
    assert binds_loopback(host) is loopback


@pytest.mark.parametrize("host", ["127.0.0.2", "[::1]"])
def test_the_host_check_applies_on_any_loopback_address(engine_for, host):
    if ":" in host and not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    server = start_server(engine_for, host=host)
    try:
        port = server.running.http.port
        url = server.http_url  # on the bound address
        for name, allowed in [
            (f"evil.example:{port}", False),
            (f"127.0.0.1.evil.example:{port}", False),
            (f"localhost:{port}", True),
            (f"127.0.0.2:{port}", True),
            (f"[::1]:{port}", True),
            (f"{host if ':' not in host else '[::1]'}:{port}", True),
        ]:
            status, _, payload = request(url + "v1/models", headers={"Host": name})
            assert (status == 200) == allowed, (name, status)
            if not allowed:
                assert status == 403 and b"not a loopback name" in payload
    finally:
        server.stop()


def test_unauthenticated_http_calls_are_counted_as_refusals(auth_server):
    url = auth_server.http_url
    refusals = {"reason": "UNAUTHENTICATED", "model": ""}
    predicts = {"model": "", "method": "Predict", "code": "UNAUTHENTICATED"}
    before = _metric(url, "gradlight_refusals_total", TOKEN, **refusals)
    predicts_before = _metric(url, "gradlight_requests_total", TOKEN, **predicts)
    assert request(url + "v1/predict", {"model": "bert", "texts": [TEXT]})[0] == 401
    assert request(url + "v1/models")[0] == 401
    wrong = {"Authorization": "Bearer not-a-token-of-this-server"}
    assert request(url + "v1/models", headers=wrong)[0] == 401
    assert _metric(url, "gradlight_refusals_total", TOKEN, **refusals) == before + 3
    assert _metric(url, "gradlight_requests_total", TOKEN, **predicts) == predicts_before + 1


def test_http_limit_flags_are_checked_naming_the_flag(tmp_path, capsys):
    from gradlight.cli.main import main

    for flag, value in [
        ("--http-header-timeout", "0"),
        ("--http-body-timeout", "-1"),
        ("--http-idle-timeout", "inf"),
        ("--http-max-connections", "0"),
    ]:
        assert main(["serve", str(tmp_path / "artifact"), flag, value]) == 2
        assert f"{flag} must be" in capsys.readouterr().err


# ---- the JSON behind it: json.loads' and json.dumps' results, in bounded pieces ----


def _value(depth: int = 0):
    roll = random.random()
    if depth > 3 or roll < 0.45:
        return random.choice([1, -2.5, 10**30, "x", "a,b", 'é,😀\n"]', True, None, 0.1, ",]"])
    if roll < 0.75:
        return [_value(depth + 1) for _ in range(random.randint(0, 8))]
    keys = ["k", "a,b", "]", "é"]
    return {random.choice(keys) + str(i): _value(depth + 1) for i in range(random.randint(0, 5))}


def _outcome(decode, text):
    try:
        return "value", decode(text)
    except json.JSONDecodeError as exc:
        return "error", exc.msg, exc.pos
    except (RecursionError, ValueError) as exc:
        return type(exc).__name__


@pytest.mark.parametrize("span", [0, 3, 20])
def test_bounded_decoding_gives_json_loads_values_and_errors(monkeypatch, span):
    monkeypatch.setattr(json_messages, "_C_SPAN", span)  # runs and element by element, small
    random.seed(span)
    for _ in range(1500):
        separators = random.choice([(",", ":"), (", ", ": "), (" ,\n ", " :\t")])
        text = json.dumps(_value(), ensure_ascii=False, separators=separators)
        if random.random() < 0.6:  # broken: a character dropped, added, or the end cut off
            at, kind = random.randrange(len(text) + 1), random.random()
            if kind < 0.33:
                text = text[:at] + text[at + 1 :]
            elif kind < 0.66:
                text = text[:at] + random.choice(',[]{}":1 \\x') + text[at:]
            else:
                text = text[:at]
        assert _outcome(json_messages.decode_json, text) == _outcome(json.loads, text), text


def test_bounded_encoding_gives_json_dumps_text(monkeypatch):
    monkeypatch.setattr(json_messages, "_LEAVES", 7)
    monkeypatch.setattr(json_messages, "_CHUNK_BYTES", 64)
    random.seed(3)
    for _ in range(500):
        value = {"results": [_value() for _ in range(3)], "scores": [0.5] * random.randint(0, 30)}
        expected = json.dumps(value, ensure_ascii=False).encode()
        assert b"".join(json_messages.encode_json(value)) == expected


def test_answers_are_encoded_as_json_dumps_of_to_json(monkeypatch):
    from gradlight.runtime.serving.json_messages import encode_message, to_json
    from gradlight.v1 import gradlight_pb2 as pb

    monkeypatch.setattr(json_messages, "_LEAVES", 5)
    tokens = [pb.Token(token=f"t{i}", start=i, end=i + 1, scores=[0.25, -1.5]) for i in range(9)]
    inner = pb.TextResult(text="", labels=["a", "b"], probabilities=[0.25, 0.75], tokens=tokens)
    result = pb.TextResult(
        text="Café 😀",
        labels=["a", "b"],
        probabilities=[0.25, 0.75],
        tokens=tokens,
        sentences=[pb.Sentence(sentence="Café", start=0, end=4, scores=[1.0, 2.0])],
        method="integrated_gradients",
        steps=8,
        faithfulness=pb.Faithfulness(fractions=[0.1, 0.2], words=3),
    )
    entity = pb.TextResult(text="x", entities=[pb.EntityResult(start=0, end=1, result=inner)])
    for message in [
        pb.AttributeResponse(model="bert", results=[result, entity, result]),
        pb.PredictResponse(model="bert"),
        pb.ListModelsResponse(models=[pb.ModelInfo(name="bert", labels=["a"], max_length=8)]),
    ]:
        expected = json.dumps(to_json(message), ensure_ascii=False).encode()
        assert b"".join(encode_message(message)) == expected


def test_a_value_shown_in_an_error_is_json_dumps_cut_to_60_characters():
    from gradlight.runtime.serving.json_messages import shown_json

    def whole(value):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."

    random.seed(5)
    values = [_value() for _ in range(2000)]
    values += [[1] * 100_000, ["x" * 1000] * 3, {"k" * 100: [[[1]]]}, "é" * 59, "é" * 61, [[]] * 70]
    values.append(json.loads("[" * 200 + "]" * 200))
    for value in values:
        assert shown_json(value) == whole(value)
