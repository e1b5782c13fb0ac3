from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helpers: tiny_models, eager_reference

from tiny_models import save_tiny_classifier


class Case(NamedTuple):
    """One tiny classifier per architecture, varied label setups. ``all_labels_graph``: also
    export the all-labels graph (else the cotangent graph serves every label); ``fp16``: also
    export and validate fp16 graphs; ``path_graph``: also export the integration path graph
    (integrated gradients, GradientSHAP); ``labels_graph``: also export the labels graph (else
    label subsets run one cotangent row per label, as for artifacts made before it;
    tests/test_many_labels.py exports and serves it)."""

    num_labels: int
    multi_label: bool
    all_labels_graph: bool = False
    fp16: bool = False
    path_graph: bool = False
    labels_graph: bool = False

    def export_options(self, **more: Any) -> Any:
        """How the suite exports this case (also tests/architecture_table.py)."""
        from gradlight.export.options import ExportOptions

        return ExportOptions(
            max_loop_labels=self.num_labels if self.all_labels_graph else 0,
            precisions=("fp16",) if self.fp16 else (),
            path_graph=self.path_graph,
            labels_graph=self.labels_graph,
            **more,
        )


ARCHITECTURE_CASES = {
    "bert": Case(3, False, all_labels_graph=True, path_graph=True),
    "roberta": Case(2, False, path_graph=True),
    "distilbert": Case(3, True),
    "electra": Case(4, False, all_labels_graph=True),
    "deberta-v2": Case(3, False, fp16=True, path_graph=True),
    "modernbert": Case(2, False, fp16=True),
    "xlm-roberta": Case(2, True, fp16=True),
    "camembert": Case(3, False, fp16=True),
    "mpnet": Case(2, False, fp16=True),
    "albert": Case(3, False, fp16=True),
}


# Local development only: GRADLIGHT_TEST_REUSE=DIR keeps the tiny models and their artifacts in
# DIR and reuses them in later runs (exporting them is most of the suite's time). CI never sets it.
REUSE = Path(os.environ["GRADLIGHT_TEST_REUSE"]) if os.environ.get("GRADLIGHT_TEST_REUSE") else None

# The README's test command runs the suite in two pytest-xdist workers (`-n 2`; pyproject.toml's
# `--dist loadscope` keeps each module's tests in one worker, in order). The session's models and
# artifacts are then made once for both: in a directory the workers share, each under a file
# lock, so the worker that gets there second waits for the first and reuses its work.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def _workdir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """Where a session fixture keeps what it makes: DIR/name with GRADLIGHT_TEST_REUSE, the
    workers' common temporary directory under xdist, else a directory of this session's own."""
    if REUSE is None and not WORKER:
        return tmp_path_factory.mktemp(name)
    root = REUSE if REUSE is not None else tmp_path_factory.getbasetemp().parent
    (root / name).mkdir(parents=True, exist_ok=True)
    return root / name


@contextmanager
def _made_once(directory: Path, name: str) -> Iterator[None]:
    """Hold ``directory/name.lock`` while making ``name`` (one worker at a time); inside, a
    fixture makes it only if it is not there yet."""
    from filelock import FileLock

    with FileLock(str(directory / f"{name}.lock")):
        yield


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = _workdir(tmp_path_factory, "tiny-models")
    dirs = {}
    with _made_once(root, "all"):
        for model_type, (num_labels, multi_label, *_) in ARCHITECTURE_CASES.items():
            dirs[model_type] = root / model_type
            if not (root / model_type / "config.json").is_file():
                save_tiny_classifier(
                    root / model_type, model_type, num_labels, multi_label=multi_label
                )
    return dirs


CNLPT_FIXTURES = Path(__file__).parent / "fixtures" / "cnlpt"
CNLPT_EXPORTED = ("proj_cls", "proj_tagged", "roberta_tagged")  # cnlpt checkpoints the tests serve


@pytest.fixture(scope="session")
def exported(tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """Export each tiny classifier once per session (lazily); return its artifact directory."""
    from gradlight.export.pipeline import export_model

    root = _workdir(tmp_path_factory, "artifacts")

    def get(model_type: str) -> Path:
        out = root / model_type
        with _made_once(root, model_type):
            if not (out / "manifest.json").is_file():  # not made yet, or kept by REUSE
                options = ARCHITECTURE_CASES[model_type].export_options()
                export_model(
                    tiny_model_dirs[model_type],
                    out,
                    options,
                    printer=logging.getLogger("export").info,
                )
        return out

    return get


@pytest.fixture(scope="session")
def exported_cnlpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The cnlpt checkpoints of tests/fixtures/cnlpt, exported: task directories by name."""
    from gradlight.export.options import ExportOptions
    from gradlight.export.pipeline import export_cnlpt

    root = _workdir(tmp_path_factory, "cnlpt")
    for name in CNLPT_EXPORTED:
        with _made_once(root, name):
            if not (root / name / "tasks.json").is_file():
                export_cnlpt(
                    CNLPT_FIXTURES / name,
                    root / name,
                    ExportOptions(max_loop_labels=0, path_graph=False, labels_graph=False),
                )
    return {name: root / name for name in CNLPT_EXPORTED}


@pytest.fixture(scope="session")
def reduced_precision_export(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """The tiny BERT exported with ``gradlight export --fp16 --bf16`` (as a user runs it): fp16
    graphs written and validated, every graph checked in bf16 with the quality gates. One export
    for tests/test_precision_and_binding.py, test_cuda.py and test_bf16.py (an export of the
    tiny BERT takes over a minute). Returns (artifact, the command's log)."""
    import subprocess

    from processes import gradlight

    root = _workdir(tmp_path_factory, "reduced-precision")
    out, log = root / "bert", root / "export.log"
    with _made_once(root, "bert"):
        if not log.is_file():
            command = gradlight(
                "export",
                str(tiny_model_dirs["bert"]),
                str(out),
                "--fp16",
                "--bf16",
                "--no-path-graph",
            )
            result = subprocess.run(command, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            log.write_text(result.stderr)
    return out, log.read_text()


@pytest.fixture(scope="session")
def fp16_artifact(reduced_precision_export: tuple[Path, str]) -> Path:
    """The tiny BERT exported with ``gradlight export --fp16`` (and ``--bf16``)."""
    out, log = reduced_precision_export
    assert "fp16 against fp32:" in log
    return out


@pytest.fixture(scope="session")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo's real classifier, built as the demo builds it: MiniLM-L6 fine-tuned on the
    bundled clinical assertion notes (about 5 minutes here), then exported.
    Returns (model dir, artifact)."""
    from gradlight.demo.training import train_assertion_classifier
    from gradlight.export.options import ExportOptions
    from gradlight.export.pipeline import export_model

    root = _workdir(tmp_path_factory, "minilm")
    model_dir, artifact = root / "model", root / "artifact"
    with _made_once(root, "artifact"):
        if not (artifact / "manifest.json").is_file():
            train_assertion_classifier(model_dir, printer=logging.getLogger("train").info)
            # bf16 checked with the quality gates too (a report only, on a CPU without bf16)
            export_model(model_dir, artifact, ExportOptions(precisions=("bf16",)))
    return model_dir, artifact


@pytest.fixture(scope="session")
def engine_for(exported):
    """Load (once) the ONNX Runtime engine of a tiny model's artifact, by model type."""
    from gradlight.runtime.execution.engine import Engine
    from gradlight.runtime.settings import EngineSettings

    cache = {}

    def get(model_type: str):
        if model_type not in cache:
            cache[model_type] = Engine(exported(model_type), EngineSettings(provider="cpu"))
            cache[model_type].warm_up()
        return cache[model_type]

    return get


@pytest.fixture(scope="session")
def tiny_server(engine_for):
    """A real server (gRPC and HTTP, loopback, ephemeral ports) serving every tiny model under
    its type's name."""
    from serving import ServerThread

    from gradlight.runtime.serving.server import ServerSettings

    names = list(ARCHITECTURE_CASES)
    if WORKER.endswith(("1", "3", "5", "7", "9")):
        names.reverse()  # from the other end than worker gw0, so the two share the exports
    loaded = {name: engine_for(name) for name in names}
    engines = {name: loaded[name] for name in ARCHITECTURE_CASES}
    server = ServerThread(engines, ServerSettings(port=0, http_port=0)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_client(tiny_server):
    from gradlight.client import Client

    with Client(tiny_server.address, timeout=60) as client:
        yield client


# ---- TLS and tokens: tests/test_tls.py, test_tokens.py, test_security_startup.py ----


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    """A self-signed certificate for localhost and 127.0.0.1, and its key (secure_serving.Pki)."""
    from secure_serving import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A token file with secure_serving's TOKEN and SECOND."""
    from secure_serving import write_token_file

    return write_token_file(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="module")
def auth_server(engine_for, token_file: Path):
    """A real server (gRPC and HTTP, loopback) serving the tiny BERT behind the token file."""
    from secure_serving import start_server

    server = start_server(engine_for, auth_token_file=token_file)
    yield server
    server.stop()


# ---- the visualizer in Chromium: tests/test_visualizer_views.py, _links, _safety, _windows ----


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless (visualizer_page.py); skipped where it is not installed."""
    from visualizer_page import launch_chromium, require_chromium

    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tiny_server):
    """A fresh tab (downloads allowed) for the tiny models' server; a page error, a dialog or a
    request to anywhere but that server fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(f"page error: {error}"))
    page.on(
        "dialog",
        lambda dialog: (page.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()),
    )
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith(tiny_server.http_url)
            or request.url.startswith(("blob:", "data:"))
            else page.problems.append(f"external request: {request.url}")
        ),
    )
    yield page
    context.close()
    assert not page.problems, page.problems
