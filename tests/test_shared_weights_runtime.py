"""One copy of an artifact's weights for all its ONNX Runtime sessions
(runtime/execution/shared_initializers.py, on with ``EngineSettings.share_weights``): each external
weight range is held by one buffer that every session reads, the outputs are those of a plain
ONNX Runtime session on the same graph to the bit, and graphs that embed their weights load as
before. Off (the default), the engine's sessions give a plain session's outputs to the bit too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from gradlight.artifact.manifest import MANIFEST_NAME, hash_artifact_files
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.shared_initializers import external_tensors
from gradlight.runtime.settings import EngineSettings

TEXTS = [
    "The patient denies chest pain. No evidence of pneumonia on the chest x-ray.",
    "Dr. Smith started amoxicillin 500 mg b.i.d. for ten days.",
    "Follow up in two weeks.",
]

# (architecture, precision): BERT with every graph, DeBERTa's fp16 graphs (weights_fp16.bin),
# ALBERT (one set of layer weights used by every layer).
CASES = [("bert", "fp32"), ("deberta-v2", "fp16"), ("albert", "fp32")]


def _engine(artifact: Path, precision: str = "fp32", share: bool = True) -> Engine:
    """An engine with every graph loaded, as their first calls would load them."""
    settings = EngineSettings(provider="cpu", precision=precision, share_weights=share)
    engine = Engine(artifact, settings)
    for key in engine.graphs:
        engine.graph_set.session(key)
    return engine


def _plain_session(path: Path, share: bool) -> ort.InferenceSession:
    """ONNX Runtime reading the graph's weights itself; with ``share``, with the options the
    shared weights need (pre-packing off, constant folding left out)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    disabled: list[str] = []
    if share:
        options.add_session_config_entry("session.disable_prepacking", "1")
        disabled = ["ConstantFolding"]
    return ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
    )


def _onnx_external(path: Path) -> list[tuple[str, Path, int, int]]:
    """(name, file, offset, length) of each external initializer, as the onnx package reads it."""
    model = onnx.load(str(path), load_external_data=False)
    found = []
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            location = (path.parent / entries["location"]).resolve()
            found.append(
                (tensor.name, location, int(entries.get("offset", 0)), int(entries["length"]))
            )
    return found


def _feeds(engine: Engine) -> dict[str, tuple]:
    """Each graph's batch and extra inputs (random, not ones, so no input hides a weight)."""
    rng = np.random.default_rng(0)
    batch = engine.batch(engine.encode(TEXTS, 64))
    feeds = {}
    for key in engine.graphs:
        shapes = {name: value.shape for name, value in engine._ones_for_extras(key, batch).items()}
        extras = {name: rng.random(shape, dtype=np.float32) for name, shape in shapes.items()}
        feeds[key] = (batch, extras)
    return feeds


@pytest.mark.parametrize(("model_type", "precision"), CASES)
def test_each_external_weight_is_one_buffer_that_every_session_gets(
    exported, model_type, precision
):
    engine = _engine(exported(model_type), precision)
    shared = engine.graph_set.shared_weights
    paths = [engine.graph_set.files / graph.file for graph in engine.graphs.values()]
    ranges = set()
    for path in paths:
        expected = _onnx_external(path)
        assert expected, f"{path.name} has no external weights: the test would prove nothing"
        assert shared.given[path] == tuple(name for name, *_ in expected)  # every one given
        ranges |= {(location, offset, length) for _, location, offset, length in expected}
    # one value per distinct range, however many graphs use it
    assert shared.ranges == ranges
    assert len(shared.values) == len(ranges)
    assert sum(len(names) for names in shared.given.values()) > len(ranges)
    # one buffer per file: each value is a view of it at its offset, not a copy
    weights = "weights_fp16.bin" if precision == "fp16" else "weights.bin"
    assert set(shared.buffers) == {(engine.graph_set.files / weights).resolve()}
    (buffer,) = shared.buffers.values()
    for (_, offset, length, dtype, shape), value in shared.values.items():
        assert value.data_ptr() == buffer.ctypes.data + offset
        assert value.shape() == list(shape)
        assert int(np.prod(shape)) * np.dtype(dtype).itemsize == length


def test_every_session_reads_the_shared_buffer_itself(exported):
    """Zeroing the one buffer changes every graph's outputs: no session kept a copy."""
    engine = _engine(exported("bert"))
    feeds = _feeds(engine)
    before = {key: engine.run(key, *feed) for key, feed in feeds.items()}
    for buffer in engine.graph_set.shared_weights.buffers.values():
        buffer[:] = 0
    for key, feed in feeds.items():
        after = engine.run(key, *feed)
        assert not np.array_equal(after["logits"], before[key]["logits"]), key


@pytest.mark.parametrize("share", [False, True], ids=["default", "shared"])
@pytest.mark.parametrize(("model_type", "precision"), CASES)
def test_outputs_equal_a_plain_onnxruntime_session_to_the_bit(
    exported, model_type, precision, share
):
    engine = _engine(exported(model_type), precision, share)
    assert bool(engine.graph_set.shared_weights.given) == share
    for key, (batch, extras) in _feeds(engine).items():
        path = engine.graph_set.files / engine.graphs[key].file
        feed = {**batch.feed, **extras}
        outputs = engine.graphs[key].outputs
        expected = dict(zip(outputs, _plain_session(path, share).run(None, feed), strict=True))
        got = engine.run(key, batch, extras)
        for name, value in expected.items():
            np.testing.assert_array_equal(got[name], value, err_msg=f"{key}: {name}")
        if share:  # against ONNX Runtime's defaults: pre-packed products round differently
            default = dict(zip(outputs, _plain_session(path, False).run(None, feed), strict=True))
            for name, value in default.items():
                np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def _embed_weights(source: Path, target: Path) -> None:
    """A copy of ``source`` whose graphs hold their weights (no weights.bin), manifest rehashed."""
    shutil.copytree(source, target)
    for path in target.glob("*.onnx"):
        model = onnx.load(str(path))  # reads the external data into the tensors
        onnx.save(model, str(path))
    for path in target.glob("weights*.bin"):
        path.unlink()
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    manifest["files"] = hash_artifact_files(target)
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_an_artifact_whose_graphs_embed_their_weights_still_loads(exported, tmp_path):
    source = exported("bert")
    embedded = tmp_path / "embedded"
    _embed_weights(source, embedded)
    assert all(not external_tensors(path) for path in embedded.glob("*.onnx"))
    engine = _engine(embedded)
    assert not engine.graph_set.shared_weights.values and not engine.graph_set.shared_weights.given
    reference = _engine(source)
    for key, (batch, extras) in _feeds(engine).items():
        for name, value in engine.run(key, batch, extras).items():
            np.testing.assert_array_equal(
                value, reference.run(key, batch, extras)[name], err_msg=f"{key}: {name}"
            )


def test_the_reader_finds_what_the_onnx_package_finds(exported):
    """The small protobuf reader against onnx.load, on every graph of every precision."""
    artifact = exported("deberta-v2")
    for path in sorted(artifact.glob("*.onnx")):
        mine = [(t.name, t.location, t.offset, t.length) for t in external_tensors(path)]
        assert mine == _onnx_external(path), path.name


def test_every_cpu_session_allocates_from_the_one_shared_arena(exported) -> None:
    """runtime/execution/cpu_arena.py: the sessions of two engines in one process all take their
    tensors from the environment's arena, without memory patterns (a block per input shape);
    and their threads stop spinning when a call ends (runtime/execution/engine.py,
    ``STOP_SPINNING``)."""
    engines = [_engine(exported("bert"), share=False), _engine(exported("albert"))]
    sessions = [session for engine in engines for session in engine.graph_set.sessions.values()]
    assert len(sessions) >= 4
    for session in sessions:
        options = session.get_session_options()
        assert options.enable_cpu_mem_arena
        assert not options.enable_mem_pattern
        assert options.get_session_config_entry("session.use_env_allocators") == "1"
        assert options.get_session_config_entry("session.force_spinning_stop") == "1"
