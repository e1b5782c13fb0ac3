"""Run a real gradlight gRPC server on a loopback port, in a background thread's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping
from typing import Any

from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.serving.server import RunningServer, ServerSettings, start_server


class ServerThread:
    def __init__(self, engines: Mapping[str, Engine], settings: ServerSettings | None = None):
        self.engines = engines
        self.settings = settings or ServerSettings(port=0)
        self.loop = asyncio.new_event_loop()
        self.running: RunningServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        self.running = self.call(start_server(self.engines, self.settings))
        return self

    def call(self, coroutine: Any, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def address(self) -> str:
        assert self.running is not None
        return f"127.0.0.1:{self.running.port}"

    @property
    def http_url(self) -> str:
        assert self.running is not None and self.running.http is not None
        return self.running.http.url

    def stop(self, grace: float = 1.0) -> None:
        if self.running is not None:
            self.call(self.running.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FaultyEngine:
    """The real engine; ``fault(graph, batch)``, when set, runs before each ONNX Runtime call
    and may change the padded inputs or wait."""

    def __init__(self, engine):
        self._engine = engine
        self.fault = None

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def run(self, key, batch, extras=None):
        if self.fault is not None:
            self.fault(key, batch)
        return self._engine.run(key, batch, extras)


def poisoning(engine, text: str):
    """A ``FaultyEngine`` fault that makes ONNX Runtime fail on the rows of ``text`` (an
    out-of-range id where its first token was), so that one line fails on the server."""
    import numpy as np

    poisoned = engine.encode([text], engine.max_length)[0].ids

    def fault(graph, batch):
        ids = batch.feed["input_ids"]
        for row in range(ids.shape[0]):
            if batch.lengths[row] == len(poisoned) and np.array_equal(
                ids[row, : len(poisoned)], poisoned
            ):
                ids[row, 1] = 10**6  # an out-of-range id: the embedding lookup fails

    return fault


@contextlib.contextmanager
def token_server(engines: Mapping[str, Engine], token: str, directory, **settings: Any):
    """A ServerThread (gRPC and HTTP on free ports) that accepts ``token`` alone, its token file
    written in ``directory`` (``server.token_file``); ``settings``: more ServerSettings."""
    from pathlib import Path

    token_file = Path(directory) / "tokens"
    token_file.write_text(token + "\n")
    server_settings = ServerSettings(port=0, http_port=0, auth_token_file=token_file, **settings)
    with ServerThread(engines, server_settings) as server:
        server.token_file = token_file
        yield server
