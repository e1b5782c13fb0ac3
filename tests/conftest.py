from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helpers: tiny_models, eager_reference

from tiny_models import save_tiny_classifier

# (model_type, labels, multi-label): one tiny classifier per architecture, varied label setups.
ARCHITECTURE_CASES = {
    "bert": (3, False),
    "roberta": (2, False),
    "distilbert": (3, True),
    "electra": (4, False),
}


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        model_type: save_tiny_classifier(
            root / model_type, model_type, num_labels, multi_label=multi_label
        ).path
        for model_type, (num_labels, multi_label) in ARCHITECTURE_CASES.items()
    }


@pytest.fixture(scope="session")
def exported(tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """Export each tiny classifier once per session (lazily); return its artifact directory."""
    from gradlight.export.pipeline import export_model

    root = tmp_path_factory.mktemp("artifacts")
    cache: dict[str, Path] = {}

    def get(model_type: str) -> Path:
        if model_type not in cache:
            out = root / model_type
            export_model(tiny_model_dirs[model_type], out, printer=logging.getLogger("export").info)
            cache[model_type] = out
        return cache[model_type]

    return get


@pytest.fixture(scope="session")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The real MiniLM-L6 with a 2-label head: (model dir, exported artifact)."""
    from gradlight.export.minilm import save_minilm_classifier
    from gradlight.export.pipeline import export_model

    root = tmp_path_factory.mktemp("minilm")
    model_dir = save_minilm_classifier(root / "model", labels=("negative", "positive"))
    artifact = root / "artifact"
    export_model(model_dir, artifact)
    return model_dir, artifact


@pytest.fixture(scope="session")
def engine_for(exported):
    """Load (once) the ONNX Runtime engine of a tiny model's artifact, by model type."""
    from gradlight.runtime.engine import Engine
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
    """A real gRPC server on a loopback port serving every tiny model under its type's name."""
    from serving import ServerThread

    server = ServerThread({name: engine_for(name) for name in ARCHITECTURE_CASES}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_client(tiny_server):
    from gradlight.client import Client

    with Client(tiny_server.address, timeout=60) as client:
        yield client
