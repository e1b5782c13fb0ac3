"""150 labels: the all-labels loop graph is skipped (its export time grows with L); the
cotangent graph, whose size does not depend on L, attributes any label or mix, and the labels
graph several of them from one forward pass. Label subsets served through the labels graph
equal those of the same artifact without it (as exported before it: one cotangent row per
label)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from eager_reference import input_x_gradient
from serving import ServerThread
from tiny_models import CORPUS, save_tiny_classifier
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from gradlight.artifact.manifest import (
    ATTRIBUTION_COTANGENT,
    ATTRIBUTION_LABELS,
    FORWARD,
    MANIFEST_NAME,
    load_manifest,
)
from gradlight.client import Client
from gradlight.runtime.execution.batcher import DynamicBatcher
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.scores import normalize_scores
from gradlight.runtime.explanation.attributor import Attributor
from gradlight.runtime.explanation.requests import AttributeOptions
from gradlight.runtime.settings import BatchSettings, EngineSettings

NUM_LABELS = 150
TOL = 1e-4
TEXTS = [
    "The patient denies chest pain. No evidence of pneumonia on the chest x-ray.",
    "Follow up with cardiology in two weeks.",
    "Dr. Smith started amoxicillin 500 mg b.i.d. for ten days. She reports worsening cough.",
]


@pytest.fixture(scope="module")
def many_labels(tmp_path_factory):
    root = tmp_path_factory.mktemp("many-labels")
    model = save_tiny_classifier(root / "model", "bert", NUM_LABELS)
    out = root / "artifact"
    result = subprocess.run(
        # (--no-path-graph: the path graph is exported and tested for the architecture cases)
        [
            sys.executable,
            "-m",
            "gradlight.cli.main",
            "export",
            str(model.path),
            str(out),
            "--no-path-graph",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return model.path, out, result


def test_cli_export_reports_progress_and_skips_the_loop_graph(many_labels):
    _, artifact, result = many_labels
    assert "[1/10] loading" in result.stderr  # forward, its fusion, cotangent, labels graphs
    assert "skipping the all-labels graph: 150 labels > max_loop_labels 10 (the labels graph" in (
        result.stderr
    )
    assert "skipping the path graph (--no-path-graph)" in result.stderr
    assert "PASSED" in result.stderr
    for output in ("logits vs eager input_ids forward", "scores (normalized) vs eager autograd"):
        assert f"attribution_labels.{output}" in result.stderr
    manifest = load_manifest(artifact)
    assert set(manifest.graphs) == {FORWARD, ATTRIBUTION_COTANGENT, ATTRIBUTION_LABELS}
    assert manifest.num_labels == NUM_LABELS
    on_disk = json.loads((artifact / "manifest.json").read_text())
    assert on_disk["export"]["step_seconds"]["attribution_cotangent"] > 0


def test_cotangent_rows_attribute_any_of_150_labels(many_labels):
    model_dir, artifact, _ = many_labels
    manifest = load_manifest(artifact)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(CORPUS[:2], padding=True, return_tensors="np")
    batch = {name: encoded[name].astype(np.int64) for name in manifest.model_inputs}
    _, ref = input_x_gradient(model, batch)
    # Rows: text 0 / label 149, text 1 / label 73 minus label 12.
    feed = {name: value.copy() for name, value in batch.items()}
    cotangent = np.zeros((2, NUM_LABELS), dtype=np.float32)
    cotangent[0, 149] = 1.0
    cotangent[1, 73], cotangent[1, 12] = 1.0, -1.0
    session = ort.InferenceSession(str(artifact / manifest.graphs[ATTRIBUTION_COTANGENT].file))
    logits, scores = session.run(None, {**feed, "cotangent": cotangent})
    assert logits.shape == (2, NUM_LABELS)
    expected = np.stack([ref[0, 149], ref[1, 73] - ref[1, 12]])
    mask = batch["attention_mask"]
    np.testing.assert_allclose(
        normalize_scores(scores, mask), normalize_scores(expected, mask), atol=1e-4, rtol=0
    )
    # The labels graph: both rows' vectors for each text, from one forward pass per text.
    session = ort.InferenceSession(str(artifact / manifest.graphs[ATTRIBUTION_LABELS].file))
    cotangents = np.stack([cotangent, cotangent])  # [2 texts, 2 vectors, L]
    logits, scores = session.run(None, {**feed, "cotangent": cotangents})
    assert logits.shape == (2, NUM_LABELS) and scores.shape == (2, 2, mask.shape[1])
    both = np.stack([np.stack([r[149], r[73] - r[12]]) for r in ref])
    np.testing.assert_allclose(
        normalize_scores(scores, mask), normalize_scores(both, mask), atol=1e-4, rtol=0
    )


def test_validate_command_accepts_it(many_labels):
    model_dir, artifact, _ = many_labels
    result = subprocess.run(
        [sys.executable, "-m", "gradlight.cli.main", "validate", str(artifact), str(model_dir)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "attribution_cotangent.scores (normalized)" in result.stdout


def test_the_labels_graph_takes_any_number_of_vectors_per_text(many_labels):
    model_dir, artifact, _ = many_labels
    manifest = load_manifest(artifact)
    info = manifest.graphs[ATTRIBUTION_LABELS]
    assert info.inputs == (*manifest.model_inputs, "cotangent")
    assert info.outputs == ("logits", "scores")
    session = ort.InferenceSession(str(artifact / info.file), providers=["CPUExecutionProvider"])
    batch_axis, vectors_axis, labels_axis = session.get_inputs()[-1].shape
    assert isinstance(batch_axis, str) and isinstance(vectors_axis, str)
    assert labels_axis == NUM_LABELS
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(CORPUS[:3], padding=True, return_tensors="np")
    batch = {name: encoded[name].astype(np.int64) for name in manifest.model_inputs}
    ref_logits, ref = input_x_gradient(model, batch)
    rng = np.random.default_rng(0)
    for count in (1, 5):
        cotangent = rng.standard_normal((3, count, NUM_LABELS)).astype(np.float32)
        logits, scores = session.run(None, {**batch, "cotangent": cotangent})
        expected = np.einsum("bkl,bls->bks", cotangent, ref)
        np.testing.assert_allclose(logits, ref_logits, atol=TOL, rtol=0)
        np.testing.assert_allclose(scores, expected, atol=TOL * np.abs(expected).max(), rtol=0)


@pytest.fixture(scope="module")
def engines(many_labels, tmp_path_factory):
    """The artifact's engine, and one of a copy without the labels graph (an artifact exported
    before it)."""
    _, artifact, _ = many_labels
    old = tmp_path_factory.mktemp("without-labels-graph") / "artifact"
    shutil.copytree(artifact, old)
    data = json.loads((old / MANIFEST_NAME).read_text(encoding="utf-8"))
    file = data["graphs"].pop(ATTRIBUTION_LABELS)["file"]
    del data["files"][file]
    (old / file).unlink()
    (old / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    loaded = []
    for directory in (artifact, old):
        engine = Engine(directory, EngineSettings(provider="cpu"))
        engine.warm_up()
        loaded.append(engine)
    assert loaded[0].has_graph(ATTRIBUTION_LABELS) and not loaded[1].has_graph(ATTRIBUTION_LABELS)
    return loaded


def _scores(result):
    return (
        np.array([list(token.raw_scores) for token in result.tokens]).T,
        np.array([list(token.scores) for token in result.tokens]).T,
    )


def test_a_label_subset_is_served_like_the_cotangent_rows(engines):
    """Over gRPC: with the labels graph (one row per text) and without it (one cotangent row
    per text and label), the same answer."""
    engine, old = engines
    labels = list(engine.labels)
    with ServerThread({"labels": engine, "rows": old}) as server, Client(server.address) as client:
        batchers = {
            name: server.running.registry.models[name].batcher for name in ("labels", "rows")
        }
        for wanted in ([labels[149], labels[3], labels[77]], [labels[12]], []):
            answers, graphs = {}, {}
            for name, batcher in batchers.items():
                before = batcher.calls
                answers[name] = client.attribute(TEXTS, model=name, labels=wanted, raw_scores=True)
                graphs[name] = {c.graph for c in list(batcher.history)[before - batcher.calls :]}
            # one label: a cotangent row is the same work as a labels graph row
            one = len(wanted) == 1
            assert graphs["labels"] == {ATTRIBUTION_COTANGENT if one else ATTRIBUTION_LABELS}
            assert graphs["rows"] == {ATTRIBUTION_COTANGENT}
            for new, rows in zip(answers["labels"].results, answers["rows"].results, strict=True):
                assert list(new.labels) == list(rows.labels) == (wanted or labels)
                raw_new, scores_new = _scores(new)
                raw_rows, scores_rows = _scores(rows)
                np.testing.assert_allclose(raw_new, raw_rows, atol=TOL * np.abs(raw_rows).max())
                np.testing.assert_allclose(scores_new, scores_rows, atol=TOL)
                np.testing.assert_allclose(new.probabilities, rows.probabilities, atol=1e-6)
                assert new.predicted_label == rows.predicted_label
        assert all(batcher.waiting_rows == 0 for batcher in batchers.values())


async def _attribute(engine, settings, asked, together=True):
    """Each of ``asked`` (labels) as one request for TEXTS[:2], all at once or one after the
    other; the results, and the batcher's calls on the labels graph."""
    batcher = DynamicBatcher(engine, settings)
    batcher.start()
    attributor = Attributor(engine, batcher, max_texts=16)
    requests = [
        attributor.run(TEXTS[:2], AttributeOptions(labels=wanted, raw_scores=True))
        for wanted in asked
    ]
    if together:
        results = await asyncio.gather(*requests)
    else:
        results = [await request for request in requests]
    await batcher.close()
    assert batcher.waiting_rows == 0
    return results, [call for call in batcher.history if call.graph == ATTRIBUTION_LABELS]


def _assert_same(results, expected):
    for ours, theirs in zip(results, expected, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            assert a.labels == b.labels
            np.testing.assert_allclose(a.raw_scores, b.raw_scores, atol=1e-5, rtol=0)
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6, rtol=0)


def test_rows_of_several_label_counts_share_a_call(engines):
    """Requests of 2, 3 and 5 labels in one call: the cotangents are padded with zero vectors,
    and each text gets its own labels' scores."""
    engine, _ = engines
    labels = engine.labels
    asked = [labels[4:6], labels[100:103], labels[:5]]
    together, calls = asyncio.run(_attribute(engine, BatchSettings(max_wait_ms=300), asked))
    alone, _ = asyncio.run(_attribute(engine, BatchSettings(max_wait_ms=0), asked, False))
    assert max(call.rows for call in calls) >= 3  # a text's rows of the three requests
    _assert_same(together, alone)


def test_a_row_counts_as_its_labels_in_the_batch_limits(engines):
    """``max_batch_size`` 3: 5 labels of a text are two rows (3 and 2 labels), and no call
    holds two of them; every label (150) is rows of 30 at the default 32."""
    engine, _ = engines
    asked = [engine.labels[10:15]]
    split, calls = asyncio.run(_attribute(engine, BatchSettings(max_batch_size=3), asked))
    whole, _ = asyncio.run(_attribute(engine, BatchSettings(max_wait_ms=0), asked))
    assert [call.rows for call in calls] == [1, 1, 1, 1]
    _assert_same(split, whole)
    _, calls = asyncio.run(_attribute(engine, BatchSettings(max_wait_ms=0), [()]))
    assert sum(call.rows for call in calls) == 2 * 5  # 2 texts x 150 / 30
