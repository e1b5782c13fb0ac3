"""A real Label Studio for tests: its own venv (never the project's), a fresh SQLite data dir,
a free loopback port, a user and an API token made non-interactively, and plain-HTTP helpers
(``urllib`` only: the test process needs neither ``requests`` nor ``label-studio-sdk``).

    with LabelStudio(cache / "venv-1.23.2", template=cache / "template-1.23.2") as ls:
        project = ls.create_project(config)
        ls.import_tasks(project["id"], [{"data": {"text": "..."}}])

Facts this rests on (Label Studio 1.23.2; docs/annotation.md says them for users):
* ``label-studio start --username U --password P --user-token T --enable-legacy-api-token``
  creates the user and the organization with legacy tokens enabled, so
  ``Authorization: Token T`` works at once; no login, no JWT.
* ``ML_BLOCK_LOCAL_IP=false`` and ``SSRF_PROTECTION_ENABLED=false``, or it refuses ML backends
  on 127.0.0.0/8; ``LATEST_VERSION_CHECK=false``, or it asks pypi.org on start.
* ``sentry-sdk<3``: with 3.0 it does not start ("Unknown option 'send_default_pii'").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

VERSION = "1.23.2"
REQUIREMENTS = (f"label-studio=={VERSION}", "sentry-sdk<3", "label-studio-sdk")
EMAIL = "gradlight@example.com"


class LabelStudioError(RuntimeError):
    def __init__(self, method: str, url: str, status: int, body: Any):
        super().__init__(f"{method} {url}: HTTP {status}: {body}")
        self.status = status
        self.body = body


def ensure_venv(venv: Path, *, python: str = "python3", requirements=REQUIREMENTS) -> Path:
    """``venv/bin/label-studio``, building the venv once if missing: under a lock file beside it
    (concurrent test processes wait), in place (a venv's scripts name its path), and marked
    complete last, so that a build cut short is built again."""
    venv = Path(venv)
    executable = venv / "bin" / "label-studio"
    marker = venv / ".gradlight-complete"
    if executable.exists() and (
        marker.exists() or not venv.parent.joinpath(f".{venv.name}.lock").exists()
    ):
        return executable  # built here, or given ready-made (no lock file beside it)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if executable.exists() and marker.exists():  # built while we waited
            return executable
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
        ]
        subprocess.run([*pip, *requirements], check=True)
        marker.write_text(" ".join(requirements) + "\n")
    return executable


CREDENTIALS = "credentials.json"


def ensure_template(venv: Path, template: Path) -> Path:
    """A migrated Label Studio data dir with a user and token (``template/data`` and
    ``template/credentials.json``), made once under a lock beside it."""
    template = Path(template)
    if (template / CREDENTIALS).exists():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    with open(template.parent / f".{template.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (template / CREDENTIALS).exists():
            return template
        shutil.rmtree(template, ignore_errors=True)
        making = LabelStudio(venv, data_dir=template)
        making.start()
        making.stop()
        (making.log_path).unlink(missing_ok=True)
        credentials = {"token": making.token, "password": making.password}
        (template / CREDENTIALS).write_text(json.dumps(credentials))  # last: complete
    return template


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudio:
    """A running Label Studio (a context manager): ``base_url``, ``token``, REST helpers."""

    def __init__(
        self,
        venv: Path,
        *,
        data_dir: Path | None = None,
        template: Path | None = None,
        start_timeout: float = 180.0,
        log_level: str = "WARNING",
    ):
        """``template``: a migrated data dir to copy (made once, under a lock, if missing; its
        user and token are reused): start takes ~3 s instead of ~30-50 s of migrations."""
        self.venv = Path(venv)
        self.template = None if template is None else Path(template)
        self._own_data_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="label-studio-"))
        self.start_timeout = start_timeout
        self.log_level = log_level
        self.port = 0
        self.base_url = ""
        self.token = secrets.token_hex(20)  # 40 characters, as Label Studio's own tokens
        self.password = secrets.token_hex(12)  # never starts with "-" (argparse)
        self.email = EMAIL
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir / "label-studio.log"
        self.timings: dict[str, float] = {}

    # ---- lifetime ----

    def __enter__(self) -> LabelStudio:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        began = time.monotonic()
        executable = ensure_venv(self.venv)
        self.timings["venv_s"] = time.monotonic() - began
        if self.template is not None:
            began = time.monotonic()
            ensure_template(self.venv, self.template)
            credentials = json.loads((self.template / CREDENTIALS).read_text())
            self.token, self.password = credentials["token"], credentials["password"]
            shutil.copytree(self.template / "data", self.data_dir / "data", dirs_exist_ok=True)
            self.timings["template_s"] = time.monotonic() - began
        self._launch(executable)

    def _launch(self, executable: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        for name in list(env):  # the project's settings must not leak in
            if name.startswith(("LABEL_STUDIO_", "DJANGO_")) or name == "VIRTUAL_ENV":
                del env[name]
        env.update(
            LABEL_STUDIO_BASE_DATA_DIR=str(self.data_dir / "data"),
            ML_BLOCK_LOCAL_IP="false",
            SSRF_PROTECTION_ENABLED="false",
            LATEST_VERSION_CHECK="false",
            SENTRY_DSN="",
            FRONTEND_SENTRY_DSN="",
            PYTHONUNBUFFERED="1",
        )
        command = [
            str(executable),
            "start",
            "--no-browser",
            "--internal-host", "127.0.0.1",
            "--port", str(self.port),
            "--data-dir", str(self.data_dir / "data"),
            "--username", self.email,
            "--password", self.password,
            "--user-token", self.token,
            "--enable-legacy-api-token",
            "--log-level", self.log_level,
        ]  # fmt: skip
        self.data_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
                start_new_session=True,  # its own process group: stop() ends only what it started
            )
        try:
            self._wait_up(began)
        except BaseException:
            self.stop()
            raise
        self.timings["start_s"] = time.monotonic() - began

    def _wait_up(self, began: float) -> None:
        while time.monotonic() - began < self.start_timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"Label Studio exited {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        self.get("/api/current-user/whoami")  # the token works
                        return
            except (OSError, LabelStudioError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"Label Studio not up in {self.start_timeout} s:\n{self.log()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # its group: the pid we started
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log(self, tail: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    # ---- HTTP ----

    def request_raw(self, method: str, path: str, file: Path, query: dict | None = None) -> Any:
        """``request`` with a JSON file's bytes as they are for the body."""
        return self.request(method, path, query=query, data=Path(file).read_bytes())

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict | None = None,
        data: bytes | None = None,
    ) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        if body is not None:
            data = json.dumps(body).encode()
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                detail = json.loads(raw)
            except ValueError:
                detail = raw.decode(errors="replace")[:2000]
            raise LabelStudioError(method, url, e.code, detail) from None
        return json.loads(raw) if raw.strip() else None

    def get(self, path: str, **query) -> Any:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Any = None, **query) -> Any:
        return self.request("POST", path, body, query or None)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    # ---- helpers ----

    def create_project(self, label_config: str, title: str = "gradlight") -> dict:
        return self.post("/api/projects", {"title": title, "label_config": label_config})

    def import_tasks(self, project: int, tasks: list[dict]) -> dict:
        """``POST /api/projects/ID/import`` (synchronous for SQLite): {"task_count",
        "prediction_count", ...}; tasks may carry ``predictions``."""
        return self.post(f"/api/projects/{project}/import", tasks, return_task_ids="true")

    def tasks(self, project: int) -> list[dict]:
        answer = self.get("/api/tasks", project=project, page_size=1000, fields="all")
        return answer["tasks"] if isinstance(answer, dict) else answer

    def task(self, task_id: int) -> dict:
        return self.get(f"/api/tasks/{task_id}")

    def predictions(self, task_id: int) -> list[dict]:
        return self.get("/api/predictions", task=task_id)

    def connect_backend(
        self,
        project: int,
        url: str,
        *,
        title: str = "gradlight",
        basic_auth: tuple[str, str] | None = None,
        is_interactive: bool = False,
        **extra: Any,
    ) -> dict:
        """``POST /api/ml``: Label Studio calls ``/health`` and ``/setup`` there before it answers
        (HTTP 400 if they fail); ``basic_auth`` makes it send ``Authorization: Basic``."""
        body: dict[str, Any] = {
            "url": url,
            "project": project,
            "title": title,
            "is_interactive": is_interactive,
        }
        if basic_auth is not None:
            body.update(
                auth_method="BASIC_AUTH",
                basic_auth_user=basic_auth[0],
                basic_auth_pass=basic_auth[1],
            )
        body.update(extra)
        return self.post("/api/ml", body)

    def backend(self, backend_id: int) -> dict:
        return self.get(f"/api/ml/{backend_id}")

    def backends(self, project: int) -> list[dict]:
        return self.get("/api/ml", project=project)

    def retrieve_predictions(self, project: int, task_ids: Iterable[int] | None = None) -> Any:
        """The data manager action "Retrieve Predictions": Label Studio POSTs the tasks to the
        project's ML backend's ``/predict`` and stores what it answers (synchronously)."""
        if task_ids is None:
            selected = {"all": True, "excluded": []}
        else:
            selected = {"all": False, "included": list(task_ids)}
        return self.post(
            "/api/dm/actions",
            {"selectedItems": selected},
            id="retrieve_tasks_predictions",
            project=project,
        )


DEFAULT_CACHE = Path.home() / ".cache" / "gradlight" / "label-studio"


def configured_cache() -> Path | None:
    """Where the venv and the data dir template are kept: ``GRADLIGHT_LABEL_STUDIO_CACHE``, else
    ``DEFAULT_CACHE``; None when that variable is set empty (the tests against a real Label
    Studio are then off)."""
    named = os.environ.get("GRADLIGHT_LABEL_STUDIO_CACHE")
    if named is None:
        return DEFAULT_CACHE
    return Path(named) if named else None


def cached() -> dict[str, Path]:
    """``LabelStudio(**cached())``: the configured cache's paths (``GRADLIGHT_LABEL_STUDIO_VENV``
    names a ready venv instead of the cache's)."""
    paths = cache_paths(configured_cache() or DEFAULT_CACHE)
    if venv := os.environ.get("GRADLIGHT_LABEL_STUDIO_VENV"):
        paths["venv"] = Path(venv)
    return paths


def cache_paths(cache: Path) -> dict[str, Path]:
    """The venv and the data dir template kept in ``cache`` (``LabelStudio(**cache_paths(c))``)."""
    cache = Path(cache)
    return {"venv": cache / f"venv-{VERSION}", "template": cache / f"template-{VERSION}"}


def prepare(cache: Path) -> dict[str, float]:
    """Build what ``cache`` keeps (the venv, the migrated template) if missing; the seconds each
    took. .ci/run runs this beside the project's install, and the tests wait on its locks."""
    paths = cache_paths(cache)
    began = time.monotonic()
    ensure_venv(paths["venv"])
    built = time.monotonic()
    ensure_template(paths["venv"], paths["template"])
    return {"venv_s": built - began, "template_s": time.monotonic() - built}


if __name__ == "__main__":
    # python tests/label_studio.py prepare CACHE: build the cache and exit;
    # python tests/label_studio.py [VENV]: start one, print its URL and token, wait
    if sys.argv[1:2] == ["prepare"]:
        print(json.dumps(prepare(Path(sys.argv[2]))), flush=True)
        sys.exit(0)
    venv = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ls-venv")
    with LabelStudio(venv) as ls:
        print(json.dumps({"url": ls.base_url, "token": ls.token, **ls.timings}), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
