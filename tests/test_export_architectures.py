"""Every supported architecture: export a tiny classifier, then check its graphs in ONNX Runtime
against an independent eager PyTorch reference on real tokenized text, other shapes than the
tracing shapes, with padding."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import ARCHITECTURE_CASES
from eager_reference import input_x_gradient
from tiny_models import CORPUS
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from gradlight.artifact.manifest import (
    ATTRIBUTION,
    ATTRIBUTION_COTANGENT,
    ATTRIBUTION_LABELS,
    ATTRIBUTION_PATH,
    ATTRIBUTION_PATH_LABELS,
    FORWARD,
    load_manifest,
)
from gradlight.artifact.model_spec import MULTI_LABEL, SINGLE_LABEL
from gradlight.runtime.execution.scores import normalize_scores

ARCHITECTURES = list(ARCHITECTURE_CASES)
TOL = 1e-4
FUSED_AS_BERT = {"bert", "roberta", "distilbert", "electra", "xlm-roberta", "camembert"}
EXPLAINS = {"deberta-v2": "embeddings.LayerNorm", "modernbert": "embeddings.norm"}
# Heads that read only the first token: their last layer is traced for it alone.
FIRST_TOKEN = {"bert", "roberta", "electra", "xlm-roberta", "camembert"}

# Batches of 5 and 1 texts (the graphs were traced on 2 x 16 random ids).
TEXT_BATCHES = [CORPUS[:5], [CORPUS[10]]]


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _load(model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    return model.eval(), AutoTokenizer.from_pretrained(model_dir)


def _encode(tokenizer, texts, input_names):
    encoded = dict(tokenizer(texts, padding=True, return_tensors="np"))
    encoded.setdefault("token_type_ids", np.zeros_like(encoded["input_ids"]))
    return {name: encoded[name].astype(np.int64) for name in input_names}


def _score_tolerance(manifest):
    """1e-4, or the validation's own tolerance where eager PyTorch's rounding noise on this
    model's normalized scores is larger (docs/architectures.md)."""
    return max(TOL, manifest.validation["score_tolerance"])


def _all_label_scores(artifact, manifest, batch):
    """``(logits, scores [B, L, S])`` from the all-labels graph, or from the cotangent graph
    with one one-hot row per label where the artifact has no all-labels graph."""
    if ATTRIBUTION in manifest.graphs:
        return _session(artifact / manifest.graphs[ATTRIBUTION].file).run(None, batch)
    rows, labels = len(batch["input_ids"]), manifest.num_labels
    repeated = {name: np.repeat(value, labels, axis=0) for name, value in batch.items()}
    cotangent = np.tile(np.eye(labels, dtype=np.float32), (rows, 1))
    session = _session(artifact / manifest.graphs[ATTRIBUTION_COTANGENT].file)
    logits, scores = session.run(None, {**repeated, "cotangent": cotangent})
    return logits[::labels], scores.reshape(rows, labels, -1)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def case(request, exported, tiny_model_dirs):
    model_type = request.param
    artifact = exported(model_type)
    model, tokenizer = _load(tiny_model_dirs[model_type])
    return model_type, artifact, load_manifest(artifact), model, tokenizer


def test_manifest_describes_the_artifact(case):
    model_type, artifact, manifest, model, _ = case
    setup = ARCHITECTURE_CASES[model_type]
    num_labels, multi_label, all_labels_graph, fp16, path_graph = setup[:5]
    assert manifest.model_type == model_type
    assert manifest.architecture == type(model).__name__
    assert manifest.labels == tuple(model.config.id2label[i] for i in range(num_labels))
    assert manifest.problem_type == (MULTI_LABEL if multi_label else SINGLE_LABEL)
    uses_types = model_type in ("bert", "electra", "albert")
    assert ("token_type_ids" in manifest.model_inputs) == uses_types
    graphs = {FORWARD, ATTRIBUTION_COTANGENT} | ({ATTRIBUTION} if all_labels_graph else set())
    graphs |= {ATTRIBUTION_PATH} if path_graph else set()
    graphs |= {ATTRIBUTION_PATH_LABELS} if path_graph and num_labels > 1 else set()
    graphs |= {ATTRIBUTION_LABELS} if setup.labels_graph else set()
    assert set(manifest.graphs) == graphs
    assert manifest.validation["passed"] is True
    if ATTRIBUTION_PATH_LABELS in graphs:  # its rows with no cotangent: the forward alone
        checks = manifest.validation["checks"]
        assert any(
            c["graph"] == ATTRIBUTION_PATH_LABELS and c["output"] == "logits with no cotangent"
            for c in checks
        ), checks
    assert set(manifest.precisions) == ({"fp16"} if fp16 else set())
    if fp16:
        assert manifest.validation["fp16"]["passed"] is True
    assert manifest.export["explains"] == EXPLAINS.get(model_type, "word embeddings")
    expected = "first token" if model_type in FIRST_TOKEN else "every token"
    assert manifest.export["last_layer"] == expected
    assert manifest.opset == 18
    assert {"torch", "transformers", "onnx", "onnxruntime"} <= set(manifest.tools)
    assert "tokenizer/tokenizer.json" in manifest.files
    assert "weights.bin" in manifest.files
    forward = manifest.graphs[FORWARD].details
    if model_type in FUSED_AS_BERT:
        assert forward["fusions"], forward  # the optimizer found BERT-family patterns to fuse
        assert forward["fused"] or forward["reason"] == "the fused graph was slower"
    else:
        assert not forward["fused"]
        assert forward["reason"] == f"no fusion known for {model_type}"
    for info in manifest.graphs.values():
        assert info.file in manifest.files
        assert info.details["size_mb"] > 0
    assert not list(artifact.parent.glob(f".{artifact.name}.partial-*"))


def test_graphs_have_dynamic_batch_and_sequence_axes(case):
    _, artifact, manifest, _, _ = case
    for info in manifest.graphs.values():
        session = _session(artifact / info.file)
        assert tuple(i.name for i in session.get_inputs()) == info.inputs
        assert tuple(o.name for o in session.get_outputs()) == info.outputs
        sequence = session.get_inputs()[0].shape[1]
        for node in session.get_inputs():
            if node.name == "cotangent":  # [batch, L], or the labels graph's [batch, K, L]
                assert all(isinstance(dim, str) for dim in node.shape[:-1]), node.shape
                assert node.shape[-1] == manifest.num_labels
            elif node.name == "noise":  # the path graph's: [batch, sequence, hidden]
                assert isinstance(node.shape[0], str) and node.shape[1] == sequence
                assert isinstance(node.shape[2], int)
            else:
                assert all(isinstance(dim, str) for dim in node.shape), node.shape
            if node.name in ("keep", "noise"):  # per token: the runtime pads them (engine.py)
                assert node.shape[1] == sequence


@pytest.mark.parametrize("texts", TEXT_BATCHES, ids=["batch5", "batch1"])
def test_attribution_graph_matches_eager_autograd(case, texts):
    _, artifact, manifest, model, tokenizer = case
    batch = _encode(tokenizer, texts, manifest.model_inputs)
    ref_logits, ref_scores = input_x_gradient(model, batch)
    logits, scores = _all_label_scores(artifact, manifest, batch)
    mask = batch["attention_mask"]
    assert scores.shape == (len(texts), manifest.num_labels, mask.shape[1])
    np.testing.assert_allclose(logits, ref_logits, atol=TOL, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=TOL * np.abs(ref_scores).max(), rtol=0)
    np.testing.assert_allclose(
        normalize_scores(scores, mask),
        normalize_scores(ref_scores, mask),
        atol=_score_tolerance(manifest),
        rtol=0,
    )
    assert np.all(scores[:, :, :][np.broadcast_to(mask[:, None, :] == 0, scores.shape)] == 0)


def test_attribution_logits_are_the_plain_forward_logits(case):
    """Faithfulness: the attributed pass is the predicted pass (the reference's defect is not)."""
    _, artifact, manifest, model, tokenizer = case
    batch = _encode(tokenizer, CORPUS[3:9], manifest.model_inputs)
    import torch

    with torch.no_grad():
        eager = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    (forward,) = _session(artifact / manifest.graphs[FORWARD].file).run(["logits"], batch)
    attributed, _ = _all_label_scores(artifact, manifest, batch)
    np.testing.assert_allclose(forward, eager, atol=TOL, rtol=0)
    np.testing.assert_allclose(attributed, eager, atol=TOL, rtol=0)
    np.testing.assert_allclose(attributed, forward, atol=TOL, rtol=0)


def test_padding_does_not_change_a_texts_scores(case):
    _, artifact, manifest, _, tokenizer = case
    short, long = CORPUS[1], CORPUS[2]
    alone = _encode(tokenizer, [short], manifest.model_inputs)
    padded = _encode(tokenizer, [short, long], manifest.model_inputs)
    width = alone["input_ids"].shape[1]
    assert padded["input_ids"].shape[1] > width
    logits_alone, scores_alone = _all_label_scores(artifact, manifest, alone)
    logits_padded, scores_padded = _all_label_scores(artifact, manifest, padded)
    np.testing.assert_allclose(logits_padded[0], logits_alone[0], atol=TOL, rtol=0)
    np.testing.assert_allclose(scores_padded[0, :, :width], scores_alone[0], atol=1e-5, rtol=0)
    assert np.all(scores_padded[0, :, width:] == 0)


def test_cotangent_graph_attributes_label_subsets_and_mixes(case):
    _, artifact, manifest, model, tokenizer = case
    texts = CORPUS[4:7]
    batch = _encode(tokenizer, texts, manifest.model_inputs)
    _, ref_scores = input_x_gradient(model, batch)
    last = manifest.num_labels - 1
    # Row i: text i with, in turn, the last label alone, label 0 minus label 1, a weighted mix.
    cotangent = np.zeros((3, manifest.num_labels), dtype=np.float32)
    cotangent[0, last] = 1.0
    cotangent[1, 0], cotangent[1, 1] = 1.0, -1.0
    cotangent[2, 0], cotangent[2, last] = 0.25, 2.0
    expected = np.stack(
        [
            ref_scores[0, last],
            ref_scores[1, 0] - ref_scores[1, 1],
            0.25 * ref_scores[2, 0] + 2.0 * ref_scores[2, last],
        ]
    )
    session = _session(artifact / manifest.graphs[ATTRIBUTION_COTANGENT].file)
    _, scores = session.run(["logits", "scores"], {**batch, "cotangent": cotangent})
    assert scores.shape == batch["input_ids"].shape
    np.testing.assert_allclose(scores, expected, atol=TOL * np.abs(expected).max(), rtol=0)
    mask = batch["attention_mask"]
    np.testing.assert_allclose(
        normalize_scores(scores, mask),
        normalize_scores(expected, mask),
        atol=_score_tolerance(manifest),
        rtol=0,
    )
