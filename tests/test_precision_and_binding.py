"""The CPU-testable parts of the GPU path: fp16 graphs exported and validated against fp32,
served with --precision fp16; the IOBinding code path (on the CPU provider here) equal to plain
runs; CUDA's provider options (TF32 off for fp32)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import ARCHITECTURE_CASES
from processes import gradlight
from serving import ServerThread

from gradlight.artifact.manifest import ATTRIBUTION, FORWARD, load_manifest
from gradlight.bench import engine_calls
from gradlight.client import Client
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.sessions import CPU, CUDA, provider_options
from gradlight.runtime.settings import EngineSettings

TEXTS = [
    "The patient denies chest pain. No evidence of pneumonia on the chest x-ray.",
    "Dr. Smith started amoxicillin 500 mg b.i.d. for ten days.",
    "Follow up in two weeks.",
]


def test_fp16_graphs_are_written_validated_and_checksummed(fp16_artifact):
    manifest = load_manifest(fp16_artifact)  # verifies every file's sha256, fp16 ones included
    assert set(manifest.precisions["fp16"]) == set(manifest.graphs)
    for key, info in manifest.precisions["fp16"].items():
        assert info.file.endswith("_fp16.onnx") and info.file in manifest.files
        assert info.inputs == manifest.graphs[key].inputs  # same int64 / fp32 interface
        assert info.outputs == manifest.graphs[key].outputs
    assert "weights_fp16.bin" in manifest.files
    report = manifest.validation["fp16"]
    assert report["passed"] and len(report["checks"]) == len(manifest.graphs)
    assert report["thresholds"] == {
        "logits_max_abs_diff_relative": 0.02,
        "normalized_scores_max_abs_diff": 0.05,
        "top3_token_agreement_min": 0.9,
    }
    for check in report["checks"]:
        assert check["normalized_scores_max_abs_diff"] <= 0.05
        assert check["top3_token_agreement"] >= 0.9


def test_the_fp16_graphs_hold_fp16_weights(fp16_artifact):
    import onnx

    manifest = load_manifest(fp16_artifact)
    for info in manifest.precisions["fp16"].values():
        model = onnx.load(str(fp16_artifact / info.file), load_external_data=False)
        types = {tensor.data_type for tensor in model.graph.initializer}
        assert onnx.TensorProto.FLOAT16 in types, info.file
    half = (fp16_artifact / "weights_fp16.bin").stat().st_size
    full = (fp16_artifact / "weights.bin").stat().st_size
    assert 0.4 * full < half < 0.6 * full


def test_fp16_validation_fails_past_its_thresholds(fp16_artifact, tiny_model_dirs, monkeypatch):
    from gradlight.export import half_precision
    from gradlight.export.model_loading import load_classifier

    manifest = load_manifest(fp16_artifact)
    loaded = load_classifier(tiny_model_dirs["bert"])
    checks = [manifest.graphs, manifest.precisions["fp16"], loaded]
    assert half_precision.validate_fp16(fp16_artifact, *checks).passed
    monkeypatch.setattr(half_precision, "LOGIT_TOLERANCE", 0.0)
    failed = half_precision.validate_fp16(fp16_artifact, *checks)
    assert not failed.passed and "FAILED" in failed.format()
    with pytest.raises(half_precision.ValidationFailedError, match="fp16 validation failed"):
        raise half_precision.HalfPrecisionError(failed)


def test_top3_agreement_counts_the_overlap_of_the_strongest_tokens():
    from gradlight.export.half_precision import top3_agreement

    mask = np.array([[1, 1, 1, 1, 0]])
    reference = np.array([[[0.9, -0.8, 0.1, 0.7, 5.0]]])  # the padded 5.0 never counts
    same = np.array([[[0.8, -0.9, 0.0, 0.6, 0.0]]])
    swapped = np.array([[[0.9, -0.8, 0.7, 0.1, 0.0]]])  # one of three replaced
    assert top3_agreement(same, reference, mask) == 1.0
    assert top3_agreement(swapped, reference, mask) == pytest.approx(2 / 3)
    # Third and fourth 0.0004 apart, under TOP3_TIE (0.001) of the largest: tied, either counts;
    # 0.002 apart: not tied, the swap is a disagreement.
    tied = np.array([[[1.0, 0.5, 0.3, 0.2996, 0.0]]])
    untied = np.array([[[1.0, 0.5, 0.3, 0.298, 0.0]]])
    fourth_first = np.array([[[1.0, 0.5, 0.2, 0.3, 0.0]]])
    assert top3_agreement(fourth_first, tied, mask) == 1.0
    assert top3_agreement(fourth_first, untied, mask) == pytest.approx(2 / 3)


def test_served_fp16_agrees_with_fp32_within_the_stated_thresholds(fp16_artifact):
    engines = {
        "fp32": Engine(fp16_artifact, EngineSettings(provider="cpu", precision="fp32")),
        "fp16": Engine(fp16_artifact, EngineSettings(provider="cpu", precision="fp16")),
    }
    assert all(
        name.endswith("_fp16.onnx") for name in (g.file for g in engines["fp16"].graphs.values())
    )
    assert not any(
        name.endswith("_fp16.onnx") for name in (g.file for g in engines["fp32"].graphs.values())
    )
    assert engines["fp32"].runs_in_fp32(ATTRIBUTION)
    assert not engines["fp16"].runs_in_fp32(ATTRIBUTION)
    with ServerThread(engines) as server, Client(server.address) as client:
        full = client.attribute(TEXTS, model="fp32", sentence_attributions=True).results
        half = client.attribute(TEXTS, model="fp16", sentence_attributions=True).results
        # The fp32 token graph's logits serve the sentence scores' full text; fp16's never do:
        # there the full text runs through the forward graph with its variants.
        rows = {
            name: sum(call.rows for call in model.batcher.history if call.graph == FORWARD)
            for name, model in server.running.registry.models.items()
        }
        variants = sum(len(result.sentences) for result in full if len(result.sentences) > 1)
        assert rows == {"fp32": variants, "fp16": variants + len(TEXTS)}
    for a, b in zip(full, half, strict=True):
        assert a.predicted_label == b.predicted_label
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=0.01)
        assert [t.token_id for t in a.tokens] == [t.token_id for t in b.tokens]
        scores_a = np.array([t.scores for t in a.tokens])
        scores_b = np.array([t.scores for t in b.tokens])
        assert np.abs(scores_a - scores_b).max() <= 0.05
        assert np.isfinite(scores_b).all()


def test_fp16_on_an_artifact_without_it_is_refused_naming_the_fix(exported):
    result = subprocess.run(
        gradlight("serve", str(exported("bert")), "--precision", "fp16", "--port", "0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "has no fp16 graphs: export it again with --fp16" in result.stderr


@pytest.mark.parametrize("model_type", list(ARCHITECTURE_CASES))
def test_io_binding_gives_exactly_the_plain_runs_outputs(model_type, exported):
    plain = Engine(exported(model_type), EngineSettings(provider="cpu"))
    bound = Engine(exported(model_type), EngineSettings(provider="cpu", io_binding=True))
    assert not plain.io_binding and bound.io_binding  # auto is off on the CPU provider
    batch = plain.batch(plain.encode(TEXTS, 64))
    np.testing.assert_array_equal(
        engine_calls.forward(bound, batch), engine_calls.forward(plain, batch)
    )
    labels = plain.manifest.num_labels
    cotangent = np.eye(labels, dtype=np.float32)[np.arange(len(TEXTS)) % labels]
    for got, expected in zip(
        engine_calls.attribute_mix(bound, batch, cotangent),
        engine_calls.attribute_mix(plain, batch, cotangent),
        strict=True,
    ):
        np.testing.assert_array_equal(got, expected)
    if plain.has_graph(ATTRIBUTION):
        for got, expected in zip(
            engine_calls.attribute_all(bound, batch),
            engine_calls.attribute_all(plain, batch),
            strict=True,
        ):
            np.testing.assert_array_equal(got, expected)


def test_cuda_runs_fp32_without_tf32():
    assert provider_options([CUDA, CPU], "fp32") == [(CUDA, {"use_tf32": "0"}), (CPU, {})]
    assert provider_options([CUDA, CPU], "fp16") == [(CUDA, {}), (CPU, {})]
    assert provider_options([CPU], "fp32") == [(CPU, {})]


def test_the_server_log_states_precision_and_binding(fp16_artifact):
    from processes import serve_process

    server = serve_process(str(fp16_artifact), "--precision", "fp16", "--io-binding", "on")
    try:
        assert "on CPUExecutionProvider, fp16, IOBinding on" in server.text_log()
        with Client(server.address) as client:
            answer = client.attribute(TEXTS[:1])
        assert answer.results[0].tokens
    finally:
        assert server.terminate() == 0
    assert json.loads((fp16_artifact / "manifest.json").read_text())["precisions"]["fp16"]
