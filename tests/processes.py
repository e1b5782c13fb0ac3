"""``gradlight`` commands as real processes: the server started like a user starts it."""

from __future__ import annotations

import sys

from gradlight.bench.served import ServerProcess


def gradlight(*args):
    return [sys.executable, "-m", "gradlight.cli.main", *args]


def serve_process(*args: str, grace_period: float = 5.0, verbose: bool = False) -> ServerProcess:
    """``gradlight serve ARGS`` on ephemeral loopback ports (gRPC and HTTP), CPU provider."""
    ports = ("--port", "0", "--http-port", "0")
    flags = [*ports, "--provider", "cpu", "--grace-period", str(grace_period)]
    return ServerProcess([*args, *flags], verbose=verbose)
