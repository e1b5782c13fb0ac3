"""A local Ray instance for tests: a head node with 2 CPUs on loopback, started as a user
starts one (``ray start --head``) and stopped with everything it started.

Ray gives a node its primary interface's address even when told 127.0.0.1, unless
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (its single-machine mode, the default on macOS and
Windows): ``LOOPBACK_ENV`` holds it, for the head and for every driver that connects, so that
all of Ray's traffic stays on the loopback interface.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RayHead:
    def __init__(self, cpus: int = 2) -> None:
        # Ray's socket paths must stay short (AF_UNIX: 107 bytes): not under pytest's tmp_path.
        self.temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        self.port = _free_port()
        ray = str(Path(sys.executable).with_name("ray"))  # this venv's: workers run its Python
        command = [
            ray, "start", "--head", "--block", f"--num-cpus={cpus}", "--num-gpus=0",
            f"--port={self.port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
            "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
            f"--object-store-memory={256 * 2**20}", f"--ray-client-server-port={_free_port()}",
            f"--dashboard-port={_free_port()}",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **LOOPBACK_ENV},
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.address = f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited: {self.process.stdout.read()}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"Ray's head did not listen on {self.address} in {timeout:.0f} s")

    def stop(self) -> None:
        """``ray start --block`` stops the processes it started when it is terminated."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def processes(self) -> list[int]:
        """Live processes started for this head (their command line names its temp dir)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if self.temp_dir in command and state != "Z":
                found.append(int(entry))
        return found
