"""``gradlight serve`` as a process: its signals from the first moment, the models loaded, then
serving until SIGTERM or SIGINT, reloading on SIGHUP (runtime/serving/server.py serves)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.serving.model_registry import load_engines
from gradlight.runtime.serving.security import Security
from gradlight.runtime.serving.server import (
    RunningServer,
    ServerSettings,
    check_ports,
    start_server,
)
from gradlight.runtime.settings import EngineSettings

logger = logging.getLogger(__name__)


class _StopSignal(BaseException):
    """SIGTERM or SIGINT while the models load, raised where the load is (a BaseException, as
    KeyboardInterrupt is, so that no ``except Exception`` on the way swallows it)."""


class _EarlySignals:
    """The process's SIGHUP, SIGTERM and SIGINT from the start of ``serve`` until the event loop
    takes them over: a SIGHUP is remembered (one reload once serving), a SIGTERM or SIGINT is
    remembered and, while ``loading``, raises ``_StopSignal`` to end the load. The handler does
    nothing else: it runs between two bytecodes of whatever the main thread runs."""

    HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.reload = False
        self.stop: int | None = None  # the first stop signal's number
        self.loading = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for signum in self.HANDLED:
            self._previous[signum] = signal.signal(signum, self._handle)
            signal.siginterrupt(signum, False)  # system calls restart, as under asyncio's

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]

    def _handle(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self.reload = True
        elif self.stop is None:
            self.stop = signum
            if self.loading:
                raise _StopSignal(signum)


def serve(
    artifacts: Mapping[str, Path | str],
    engine_settings: EngineSettings,
    settings: ServerSettings,
    on_ready: Callable[[RunningServer], None] | None = None,
) -> None:
    """Load, warm up and serve until SIGTERM or SIGINT; then stop gracefully. SIGHUP
    reloads the artifacts that changed on disk. ``on_ready``: called once both servers
    serve (what a caller prints only when serving started).

    The signals are handled from the moment ``serve`` is called: a SIGHUP while the models
    load is kept for one reload once serving; a SIGTERM or SIGINT while they load stops the
    load, and ``serve`` returns without serving. Call it from the main thread (signals are
    handled there)."""
    signals = _EarlySignals()
    signals.install()
    # The imported modules' objects live as long as the process: frozen out of the collector,
    # a full collection (each reload makes one, on the event loop) takes a few milliseconds
    # rather than tens.
    gc.collect()
    gc.freeze()
    try:
        try:
            signals.loading = True
            security = settings.load_security()  # bad TLS or token files fail before loading
            check_ports(settings)  # and so does a port in use
            logger.info("loading %d model(s): %s", len(artifacts), ", ".join(artifacts))
            engines = load_engines(artifacts, engine_settings)
            signals.loading = False
        except _StopSignal:
            _log_stopped_before_serving(signals)
            return
        if signals.stop is not None:
            _log_stopped_before_serving(signals)
            return
        asyncio.run(_serve(engines, settings, security, on_ready, signals))
    finally:
        signals.restore()


def _log_stopped_before_serving(signals: _EarlySignals) -> None:
    assert signals.stop is not None
    logger.info("%s while loading: stopped before serving", signal.Signals(signals.stop).name)


async def _serve(
    engines: dict[str, Engine],
    settings: ServerSettings,
    security: Security,
    on_ready: Callable[[RunningServer], None] | None = None,
    early: _EarlySignals | None = None,
) -> None:
    """Serve ``engines`` until SIGTERM or SIGINT, reloading on SIGHUP; ``early``: the signals
    that came before the event loop handled them (a stop: not served; a SIGHUP: one reload once
    serving)."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    reload_requested = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
    if early is not None and early.stop is not None:
        _log_stopped_before_serving(early)
        return
    if early is not None and early.reload:
        logger.info("SIGHUP before serving started: reloading once serving")
        reload_requested.set()
    running = await start_server(engines, settings, security)
    engines.clear()  # the registry holds them now: a model a reload replaces must not stay here
    if on_ready is not None:
        on_ready(running)
    reloads = loop.create_task(_reload_when_asked(running, reload_requested))
    await stop_requested.wait()
    await running.stop()
    reloads.cancel()


async def _reload_when_asked(running: RunningServer, requested: asyncio.Event) -> None:
    """Reload each time ``requested`` is set; signals during a reload make one more after it."""
    while True:
        await requested.wait()
        requested.clear()
        try:
            await running.reload()
        except Exception:
            logger.exception("reload failed; still serving the models loaded before")
