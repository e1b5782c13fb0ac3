"""``gradlight`` commands as real processes: the server started like a user starts it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

from gradlight.bench.machine import rss_bytes


def gradlight(*args):
    return [sys.executable, "-m", "gradlight.cli.main", *args]


class ServeProcess:
    """``gradlight serve ARGS`` on ephemeral loopback ports, CPU provider; waits until it
    serves (the log line naming the gRPC address) and keeps reading its log."""

    def __init__(self, *args, grace_period: float = 5.0):
        self.process = subprocess.Popen(
            gradlight(
                "serve",
                *args,
                "--port",
                "0",
                "--http-port",
                "0",
                "--provider",
                "cpu",
                "--grace-period",
                str(grace_period),
            ),
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self.address = None
        self.http_url = None
        deadline = time.monotonic() + 120
        while self.address is None and time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.log.append(line)
            if match := re.search(r"visualizer and JSON endpoints on (\S+)", line):
                self.http_url = match.group(1)
            if match := re.search(r"gradlight serving on (\S+)", line):
                self.address = match.group(1)
        assert self.address, "".join(self.log)
        self._reader = threading.Thread(
            target=lambda: self.log.extend(self.process.stderr), daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        """The server process's resident memory now."""
        return rss_bytes(self.pid)

    def text_log(self) -> str:
        return "".join(self.log)

    def terminate(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        self._reader.join(5)
        return code
