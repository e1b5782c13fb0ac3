"""An engine loads the forward graph and the graph a plain request runs at startup, and every other
graph (cotangent, labels, path) on its first call (runtime/execution/graph_set.py,
``GraphSet.session``): each ONNX Runtime session holds its own pre-packed weights, so a graph never
called costs no memory. A graph loaded late answers as a plain ONNX Runtime session does, to the
bit, and is loaded once however many calls ask for it at the same time."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

from gradlight.artifact.manifest import (
    ATTRIBUTION,
    ATTRIBUTION_COTANGENT,
    ATTRIBUTION_PATH,
    FORWARD,
)
from gradlight.bench import engine_calls
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.settings import EngineSettings

TEXTS = ["The patient denies chest pain.", "Started amoxicillin for ten days, follow up."]


def test_graphs_beyond_a_plain_request_load_on_their_first_call(exported, caplog) -> None:
    artifact = exported("bert")  # forward, cotangent, all-labels and both path graphs
    with caplog.at_level(logging.INFO, logger="gradlight.runtime.execution.engine"):
        engine = Engine(artifact, EngineSettings(provider="cpu"))
    assert {ATTRIBUTION_COTANGENT, ATTRIBUTION_PATH} <= set(engine.graphs)
    assert set(engine.graph_set.sessions) == {FORWARD, ATTRIBUTION}
    assert (
        "attribution_cotangent, attribution_path, attribution_path_labels load on their first "
        "call" in caplog.text
    )
    assert engine.has_graph(ATTRIBUTION_COTANGENT) and engine.has_graph(ATTRIBUTION_PATH)

    batch = engine.batch(engine.encode(TEXTS, 32))
    cotangent = np.random.default_rng(0).random((2, len(engine.labels)), dtype=np.float32)
    caplog.clear()
    with (
        caplog.at_level(logging.INFO, logger="gradlight.runtime.execution.engine"),
        ThreadPoolExecutor(4) as pool,
    ):
        answers = list(
            pool.map(lambda _: engine_calls.attribute_mix(engine, batch, cotangent), range(4))
        )
    assert caplog.text.count("attribution_cotangent loaded on its first call") == 1
    assert (
        ATTRIBUTION_COTANGENT in engine.graph_set.sessions
        and ATTRIBUTION_PATH not in engine.graph_set.sessions
    )

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    plain = ort.InferenceSession(
        str(artifact / engine.graphs[ATTRIBUTION_COTANGENT].file),
        options,
        providers=["CPUExecutionProvider"],
    )
    logits, scores = plain.run(None, {**batch.feed, "cotangent": cotangent})
    for got_logits, got_scores in answers:
        np.testing.assert_array_equal(got_logits, logits)
        np.testing.assert_array_equal(got_scores, scores)
