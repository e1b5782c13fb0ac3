"""The server end to end: ``gradlight serve`` in its own process, Attribute over loopback gRPC.

Clients are ``grpc.aio`` tasks in the benchmark's process (on the same cores as the server):
each sends one-text Attribute requests (token attributions for every label, truncation at the
mix's ``max_length``) until the level's request count is reached, and checks that each answer
is its own request's text. One more level asks for token AND sentence attributions in every
request (``sentence_clients`` clients), each answer checked to hold one score per label for
each of its text's sentences: what the served target against the reference is judged on.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from gradlight.bench.stats import latency
from gradlight.runtime.explanation.sentences import split_sentences
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc


class ServerProcess:
    """``gradlight serve ARGS`` in its own process, started like a user starts it: waits until
    it serves (the log line naming its gRPC address; the visualizer's URL too when it has one)
    and reads its log all along (kept in ``log``), so it never blocks on a full pipe."""

    def __init__(self, args: Sequence[str], *, verbose: bool = False) -> None:
        """``verbose``: debug logging (a line per call)."""
        debug = ["--verbose"] if verbose else []
        command = [sys.executable, "-m", "gradlight.cli.main", *debug, "serve", *args]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.address = ""
        self.http_url: str | None = None
        self.log: list[str] = []
        for line in self.process.stderr:  # type: ignore[union-attr]
            self.log.append(line)
            if match := re.search(r"visualizer and JSON endpoints on (\S+)", line):
                self.http_url = match.group(1)
            if match := re.search(r"gradlight serving on (\S+)", line):
                self.address = match.group(1)
                break
        if not self.address:
            self.process.kill()
            raise RuntimeError("gradlight serve did not start:\n" + "".join(self.log[-20:]))
        self._reader = threading.Thread(
            target=lambda: self.log.extend(self.process.stderr),  # type: ignore[arg-type]
            daemon=True,
        )
        self._reader.start()

    @classmethod
    def for_bench(
        cls, artifact: Path, provider: str, threads: int, extra: Sequence[str] = ()
    ) -> ServerProcess:
        """gRPC only on any free port, with the benchmark's provider and thread count."""
        engine_flags = ("--provider", provider, "--intra-op-threads", str(threads))
        return cls([str(artifact), "--port", "0", "--no-http", *engine_flags, *extra])

    @property
    def pid(self) -> int:
        return self.process.pid

    def text_log(self) -> str:
        return "".join(self.log)

    def terminate(self) -> int:
        """SIGTERM (a graceful stop); its exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        self._reader.join(5)
        return code

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.terminate()


def _check(result: pb.TextResult, text: str, sentences: bool) -> None:
    if result.text != text:
        raise RuntimeError("a served answer is not its request's text")
    if sentences:
        labels = len(result.probabilities)
        count = len(split_sentences(text))  # a truncated text's: those the model reads
        listed = len(result.sentences)
        if not (listed == count or (result.truncated and 0 < listed <= count)) or any(
            len(s.scores) != labels for s in result.sentences
        ):
            raise RuntimeError(f"a served answer lacks its text's {count} sentences' scores")


async def _level(
    stub: pb_grpc.AttributorStub,
    texts: list[str],
    clients: int,
    requests: int,
    max_length: int,
    sentences: bool = False,
) -> dict[str, Any]:
    """``clients`` concurrent clients sending ``requests`` one-text requests in all: token
    attributions, and sentence attributions too with ``sentences``."""
    latencies: list[float] = []
    tokens = 0
    next_index = 0

    async def client() -> None:
        nonlocal next_index, tokens
        while next_index < requests:
            text = texts[next_index % len(texts)]
            next_index += 1
            request = pb.AttributeRequest(
                texts=[text],
                token_attributions=True,
                sentence_attributions=sentences,
                max_length=max_length,
            )
            started = time.perf_counter()
            response = await stub.Attribute(request)
            latencies.append(time.perf_counter() - started)
            _check(response.results[0], text, sentences)
            tokens += len(response.results[0].tokens)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "sentences": sentences,
        "requests": len(latencies),
        "latency": latency(latencies),
        "texts_per_second": round(len(latencies) / elapsed, 2),
        "tokens_per_second": round(tokens / elapsed, 1),
    }


def _requests(clients: int) -> int:
    return max(32, 4 * clients)


async def _measure(
    address: str,
    texts: list[str],
    clients: tuple[int, ...],
    max_length: int,
    sentence_clients: int | None,
) -> list[dict[str, Any]]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AttributorStub(channel)
        for text in texts[:4]:  # warm up the server's path, both kinds of request
            await stub.Attribute(
                pb.AttributeRequest(
                    texts=[text], token_attributions=True, sentence_attributions=True
                )
            )
        levels = [
            await _level(stub, texts, count, _requests(count), max_length) for count in clients
        ]
        if sentence_clients:
            count = sentence_clients
            levels.append(await _level(stub, texts, count, _requests(count), max_length, True))
        return levels


def measure_served(
    artifact: Path,
    texts: list[str],
    clients: tuple[int, ...],
    max_length: int,
    provider: str,
    threads: int,
    precision: str = "fp32",
    sentence_clients: int | None = None,
) -> list[dict[str, Any]]:
    """The server's levels: token attributions at each of ``clients``, then token and sentence
    attributions at ``sentence_clients`` (none if None); each level's ``sentences`` says which."""
    extra = ("--precision", precision) if precision != "fp32" else ()
    with ServerProcess.for_bench(artifact, provider, threads, extra) as server:
        return asyncio.run(_measure(server.address, texts, clients, max_length, sentence_clients))
