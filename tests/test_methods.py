"""Integrated gradients and GradientSHAP served over gRPC (the exported path graph) equal Captum
and eager PyTorch on the same model and the same tokens: Captum's LayerIntegratedGradients on
the word embeddings (pad baseline) and IntegratedGradients on the explained module's output
swapped in by a forward hook (zero baseline, DeBERTa-v3's LayerNorm output), every integration
rule as Captum computes it; GradientSHAP fed the same seeded draws (runtime/explanation/methods.py
``draws`` from ``text_seed``); the completeness gaps by their definition; and the method
fields' refusals."""

from __future__ import annotations

import functools

import grpc
import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from eager_reference import explained_module
from google.rpc import error_details_pb2, status_pb2
from serving import ServerThread
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from gradlight.artifact.manifest import ATTRIBUTION_PATH, ATTRIBUTION_PATH_LABELS, FORWARD
from gradlight.runtime.execution.batcher import CallRecord
from gradlight.runtime.explanation.methods import draws, text_seed
from gradlight.runtime.explanation.path_rows import shared_row_weight
from gradlight.runtime.serving.server import ServerSettings
from gradlight.runtime.settings import BatchSettings
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1.gradlight_pb2_grpc import AttributorStub
from gradlight.wire.error_details import error_details

# Three lengths in one request: the shorter texts are padded in the path graph's batches.
TEXTS = [
    "No evidence of pneumonia.",
    "The patient denies chest pain and shortness of breath; she reports worsening cough over "
    "the last three days.",
    "Follow up with cardiology in two weeks.",
]
RELATIVE = 1e-4  # of the text's and label's largest |score| (observed: up to ~2.5e-6)
SERVED = ("bert", "roberta", "deberta-v2", "distilbert")  # distilbert: no path graph


# Calls as large as the limits allow (no cut for padding's cost): the texts of a request share
# path graph calls, the shorter ones padded (their ``keep`` and ``noise`` too).
PADDING = BatchSettings(
    max_batch_size=512, max_tokens_per_batch=1 << 16, call_cost_tokens=1_000_000
)


@pytest.fixture(scope="module")
def server(engine_for):
    """A real server on a loopback port."""
    engines = {name: engine_for(name) for name in SERVED}
    with ServerThread(engines, ServerSettings(port=0, batch=PADDING)) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server):
    """A plain stub over a real channel."""
    channel = grpc.insecure_channel(server.address)
    yield AttributorStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def eager(tiny_model_dirs):
    """The eager model (eval, eager attention) and its pad token id, by model type."""

    @functools.cache
    def get(model_type: str):
        model_dir = tiny_model_dirs[model_type]
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, attn_implementation="eager"
        ).eval()
        return model, AutoTokenizer.from_pretrained(model_dir).pad_token_id

    return get


def attribute(stub, model: str, texts=TEXTS, **fields) -> list[pb.TextResult]:
    request = pb.AttributeRequest(
        model=model, texts=list(texts), token_attributions=True, raw_scores=True, **fields
    )
    return list(stub.Attribute(request, timeout=120).results)


def served_raw(result: pb.TextResult) -> np.ndarray:
    """``[K, S]`` raw scores, labels in ``result.labels`` order."""
    return np.array([list(token.raw_scores) for token in result.tokens], dtype=np.float64).T


def token_ids(result: pb.TextResult) -> tuple[torch.Tensor, torch.Tensor]:
    """``([1, S] ids, [S] special)`` as the server tokenized the text."""
    ids = torch.tensor([[token.token_id for token in result.tokens]], dtype=torch.int64)
    special = torch.tensor([token.special for token in result.tokens])
    return ids, special


def label_index(model, name: str) -> int:
    return int(model.config.label2id[name])


# ---- the eager side ----


def logits_of(model, input_ids, attention_mask):
    return model(input_ids=input_ids, attention_mask=attention_mask).logits


def logits_with(model, layer, values, input_ids, attention_mask):
    """The logits with ``layer``'s output replaced by ``values`` (the model's own positions,
    token types and mask from ``input_ids``)."""
    handle = layer.register_forward_hook(lambda _module, _inputs, _output: values)
    try:
        return logits_of(model, input_ids, attention_mask)
    finally:
        handle.remove()


def layer_output(model, layer, input_ids) -> torch.Tensor:
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(
        lambda _module, _inputs, output: captured.append(output.detach().clone())
    )
    try:
        with torch.no_grad():
            logits_of(model, input_ids, torch.ones_like(input_ids))
    finally:
        handle.remove()
    return captured[0]


def baseline_ids(ids: torch.Tensor, special: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Every non-special token replaced by the pad token."""
    return torch.where(special[None], ids, torch.full_like(ids, pad_id))


def baseline_values(model, layer, ids, special, pad_id, baseline: str) -> torch.Tensor:
    """``[1, S, H]``: the layer's output at the baseline ids, or zeros."""
    if baseline == "zeros":
        return torch.zeros_like(layer_output(model, layer, ids))
    return layer_output(model, layer, baseline_ids(ids, special, pad_id))


def reference_ig(model, layer, ids, special, pad_id, *, baseline, label, steps, rule, lig):
    """Captum's integrated gradients of ``label`` w.r.t. ``layer``'s output, summed over the
    hidden axis: ``[S]``. ``lig``: LayerIntegratedGradients with the pad baseline ids (the
    pad baseline only); else IntegratedGradients on the layer output swapped in by a hook."""
    mask = torch.ones_like(ids)
    if lig:
        assert baseline == "pad"
        method = LayerIntegratedGradients(lambda i, m: logits_of(model, i, m), layer)
        attributions = method.attribute(
            ids,
            baselines=baseline_ids(ids, special, pad_id),
            target=label,
            additional_forward_args=(mask,),
            n_steps=steps,
            method=rule,
        )
    else:
        method = IntegratedGradients(lambda v, i, m: logits_with(model, layer, v, i, m))
        attributions = method.attribute(
            layer_output(model, layer, ids),
            baselines=baseline_values(model, layer, ids, special, pad_id, baseline),
            target=label,
            additional_forward_args=(ids, mask),
            n_steps=steps,
            method=rule,
        )
    return attributions.sum(-1)[0].detach().double().numpy()


def reference_shap(model, layer, ids, special, pad_id, *, baseline, label, alphas, noise):
    """``mean_j grad(b + a_j (x_j - b)) . (x_j - b)``, ``x_j = e + noise_j``: ``[S]``, and the
    largest mean over draws of a token's ``sum_h |grad_h (x_j - b)_h|``."""
    samples = len(alphas)
    embeds = layer_output(model, layer, ids)[0]
    base = baseline_values(model, layer, ids, special, pad_id, baseline)[0]
    if noise is not None and baseline == "pad":  # no noise where the baseline keeps the token
        noise = noise * (~special).numpy()[None, :, None]
    x = embeds[None] + (0 if noise is None else torch.from_numpy(noise))
    difference = x - base[None]
    alpha = torch.from_numpy(np.asarray(alphas, dtype=np.float32))[:, None, None]
    points = (base[None] + alpha * difference).detach().requires_grad_(True)
    many = ids.expand(samples, -1)
    with torch.enable_grad():
        logits = logits_with(model, layer, points, many, torch.ones_like(many))
        (grad,) = torch.autograd.grad(logits[:, label].sum(), points)
    terms = (grad * difference).double()
    # float32 rounds each term of the dot products: where they cancel (the pad baseline's
    # special tokens, whose difference is the noise alone) that, not the sum, sets the scale
    magnitude = float(terms.abs().sum(-1).mean(0).max())
    return terms.sum(-1).mean(0).detach().numpy(), magnitude


def relative_difference(served: np.ndarray, expected: np.ndarray, scale: float = 0.0) -> float:
    """The largest difference over the largest |expected| (or ``scale`` if larger)."""
    return float(np.abs(served - expected).max() / max(np.abs(expected).max(), scale))


# ---- integrated gradients ----


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
@pytest.mark.parametrize("baseline", ["pad", "zeros"])
@pytest.mark.parametrize(
    ("rule", "steps", "subset"),
    [("gausslegendre", 16, False), ("riemann_trapezoid", 10, True), ("riemann_left", 7, False)],
)
def test_integrated_gradients_equal_captum(
    server, stub, eager, model_type, baseline, rule, steps, subset
):
    model, pad_id = eager(model_type)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    labels = names[::-2] if subset else []  # a subset, in an order of its own
    batcher = server.running.registry.models[model_type].batcher
    before = batcher.calls
    results = attribute(
        stub,
        model_type,
        method="integrated_gradients",
        steps=steps,
        integration=rule,
        baseline=baseline,
        labels=labels,
    )
    layer = model.get_input_embeddings()
    # One call for the three texts' points (a row per point holding every label's cotangent),
    # padded to the longest, and one for their baseline rows (no cotangent: the forward only);
    # one label: the path graph, one call for both (a row per point, and the baseline's).
    lengths = [len(result.tokens) for result in results]
    assert len(set(lengths)) == 3
    calls = list(batcher.history)[-(batcher.calls - before) :]
    shared = len(labels or names) > 1
    graph = ATTRIBUTION_PATH_LABELS if shared else ATTRIBUTION_PATH
    points, ends = len(TEXTS) * steps, len(TEXTS)
    expected = [points, ends] if shared else [points + ends]
    assert sorted(
        ((call.graph, call.rows, call.width) for call in calls if call.graph != FORWARD),
        reverse=True,
    ) == [(graph, rows, max(lengths)) for rows in expected]
    for result in results:
        assert result.method == "integrated_gradients"
        assert list(result.labels) == (labels or names)
        assert len(result.completeness_gaps) == len(result.labels)
        ids, special = token_ids(result)
        raw = served_raw(result)
        for k, name in enumerate(result.labels):
            expected = reference_ig(
                model,
                layer,
                ids,
                special,
                pad_id,
                baseline=baseline,
                label=label_index(model, name),
                steps=steps,
                rule=rule,
                lig=baseline == "pad",
            )
            assert relative_difference(raw[k], expected) < RELATIVE, (result.text, name)


def test_input_x_gradient_is_the_default_method(stub):
    """method "" and "input_x_gradient" give today's numbers, bit for bit."""
    for labels in ([], ["label_2", "label_0"]):  # the all-labels graph, the cotangent graph
        unset = attribute(stub, "bert", labels=labels)
        for method in ("", "input_x_gradient"):
            results = attribute(stub, "bert", labels=labels, method=method)
            for got, want in zip(results, unset, strict=True):
                assert got.method == want.method == "input_x_gradient"
                assert not got.completeness_gaps and got.seed == 0
                np.testing.assert_array_equal(served_raw(got), served_raw(want))
                assert list(got.probabilities) == list(want.probabilities)


# ---- GradientSHAP ----


def test_gradient_shap_equals_eager_on_the_same_draws(stub, eager):
    model, pad_id = eager("bert")
    layer = model.get_input_embeddings()
    fields = dict(method="gradient_shap", samples=4, stdev=0.05)
    results = attribute(stub, "bert", **fields)  # the server draws the seed
    seeds = {result.seed for result in results}
    assert len(seeds) == 1 and 0 not in seeds
    for result in results:
        assert result.method == "gradient_shap"
        ids, special = token_ids(result)
        seed = text_seed(result.seed, ids[0].numpy())  # the text's own draws
        alphas, noise = draws(seed, 4, ids.shape[1], layer.embedding_dim, 0.05)
        raw = served_raw(result)
        for k, name in enumerate(result.labels):
            expected, magnitude = reference_shap(
                model,
                layer,
                ids,
                special,
                pad_id,
                baseline="pad",
                label=label_index(model, name),
                alphas=alphas,
                noise=noise,
            )
            difference = relative_difference(raw[k], expected, magnitude)
            assert difference < RELATIVE, (result.seed, result.text, name)

    # The seed reproduces the answer; a label asked alone gets its draws too.
    (seed,) = seeds
    again = attribute(stub, "bert", seed=seed, **fields)
    alone = attribute(stub, "bert", seed=seed, labels=["label_1"], **fields)
    other = attribute(stub, "bert", seed=seed + 1, **fields)
    for first, repeat, single, changed in zip(results, again, alone, other, strict=True):
        assert repeat.seed == single.seed == seed and changed.seed == seed + 1
        np.testing.assert_array_equal(served_raw(repeat), served_raw(first))
        np.testing.assert_array_equal(repeat.completeness_gaps, first.completeness_gaps)
        scale = np.abs(served_raw(first)[1]).max()
        np.testing.assert_allclose(
            served_raw(single)[0], served_raw(first)[1], rtol=0, atol=RELATIVE * scale
        )
        assert not np.allclose(served_raw(changed), served_raw(first), rtol=0.01, atol=0)

    # The zero baseline, an explicit seed, no noise.
    results = attribute(
        stub, "bert", method="gradient_shap", samples=3, stdev=0.0, seed=7, baseline="zeros"
    )
    for result in results:
        ids, special = token_ids(result)
        alphas, noise = draws(
            text_seed(7, ids[0].numpy()), 3, ids.shape[1], layer.embedding_dim, 0.0
        )
        assert noise is None and result.seed == 7
        raw = served_raw(result)
        for k, name in enumerate(result.labels):
            expected, magnitude = reference_shap(
                model,
                layer,
                ids,
                special,
                pad_id,
                baseline="zeros",
                label=label_index(model, name),
                alphas=alphas,
                noise=noise,
            )
            difference = relative_difference(raw[k], expected, magnitude)
            assert difference < RELATIVE, (result.text, name)


# ---- completeness ----


@pytest.mark.parametrize("baseline", ["pad", "zeros"])
def test_completeness_gaps_are_small_and_by_definition(stub, eager, baseline):
    """gap = sum of raw scores - (f(text) - f(baseline)), f(text) as Predict serves it and
    f(baseline) the eager model with the baseline swapped in. The tiny random model's logits
    are nearly flat (|f(text) - f(pad baseline)| ~ 1e-4, zeros ~ 0.15) and its gaps sit at
    float32 rounding (~1e-7) from 64 points on, so the tolerances follow the logits' rounding."""
    model, pad_id = eager("bert")
    layer = model.get_input_embeddings()
    predicted = stub.Predict(pb.PredictRequest(model="bert", texts=TEXTS), timeout=60).results
    largest_gap, rounding = {}, 0.0
    for steps in (4, 64, 128):
        results = attribute(
            stub, "bert", method="integrated_gradients", steps=steps, baseline=baseline
        )
        largest_gap[steps] = max(np.abs(result.completeness_gaps).max() for result in results)
        if steps != 64:
            continue
        for result, prediction in zip(results, predicted, strict=True):
            ids, special = token_ids(result)
            mask = torch.ones_like(ids)
            with torch.no_grad():
                text_logits = logits_of(model, ids, mask)[0].double().numpy()
                base = baseline_values(model, layer, ids, special, pad_id, baseline)
                base_logits = logits_with(model, layer, base, ids, mask)[0].double().numpy()
            # Predict's probabilities are the softmax of these logits: f(text) as served.
            probabilities = np.exp(text_logits - text_logits.max())
            np.testing.assert_allclose(
                prediction.probabilities, probabilities / probabilities.sum(), atol=1e-6
            )
            sums = served_raw(result).sum(-1)
            gaps = np.array(result.completeness_gaps, dtype=np.float64)
            change = text_logits - base_logits
            precision = 1e-5 * max(np.abs(text_logits).max(), np.abs(change).max())
            rounding = max(rounding, precision)
            np.testing.assert_allclose(gaps, sums - change, rtol=0, atol=precision)
            # From Predict's probabilities alone (softmax: logits up to a constant): the gaps'
            # differences between labels.
            log_p = np.log(np.asarray(prediction.probabilities, dtype=np.float64))
            np.testing.assert_allclose(
                gaps - gaps[0],
                (sums - sums[0]) - ((log_p - log_p[0]) - (base_logits - base_logits[0])),
                rtol=0,
                atol=precision,
            )
            # 64 Gauss-Legendre points: the gap is a tiny part of what the scores explain.
            assert np.abs(gaps).max() <= max(1e-3 * np.abs(change).max(), precision), gaps
    # More points never make it worse (beyond rounding).
    assert largest_gap[64] <= max(largest_gap[4], rounding)
    assert largest_gap[128] <= max(largest_gap[4], rounding)


# ---- DeBERTa-v3: the LayerNorm output is explained ----


@pytest.mark.parametrize("baseline", ["pad", "zeros"])
def test_deberta_integrated_gradients_on_the_explained_layernorm(stub, eager, baseline):
    model, pad_id = eager("deberta-v2")
    layer = explained_module(model)
    assert layer is not model.get_input_embeddings()
    # Rules without the point alpha = 0: there the zero baseline puts zero vectors where the
    # encoder expects normalized ones and the gradients reach ~1e12 (the model's, not
    # gradlight's; served and Captum still agree). The tiny DeBERTa's path bends: 12 and 64
    # Gauss-Legendre points differ by ~30%, so the rule and the steps are seen here.
    for rule, steps in (("gausslegendre", 12), ("riemann_middle", 9)):
        results = attribute(
            stub,
            "deberta-v2",
            method="integrated_gradients",
            steps=steps,
            integration=rule,
            baseline=baseline,
            labels=["label_2", "label_1"],
        )
        for result in results:
            ids, special = token_ids(result)
            raw = served_raw(result)
            for k, name in enumerate(result.labels):
                expected = reference_ig(
                    model,
                    layer,
                    ids,
                    special,
                    pad_id,
                    baseline=baseline,
                    label=label_index(model, name),
                    steps=steps,
                    rule=rule,
                    lig=False,
                )
                assert relative_difference(raw[k], expected) < RELATIVE, (rule, result.text, name)


# ---- refusals ----


def bad_request_fields(error: grpc.RpcError) -> list[str]:
    metadata = dict(error.trailing_metadata())
    status = status_pb2.Status.FromString(metadata["grpc-status-details-bin"])
    fields = []
    for packed in status.details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            fields.extend(violation.field for violation in bad.field_violations)
    return fields


# Integrated gradients with its steps chosen per text (completeness_tolerance).
TOLERANT = {"method": "integrated_gradients", "completeness_tolerance": 0.01}


@pytest.mark.parametrize(
    ("model", "fields", "field"),
    [
        ("bert", {"method": "lime"}, "method"),
        ("bert", {"method": "integrated_gradients", "integration": "simpson"}, "integration"),
        ("bert", {"method": "gradient_shap", "baseline": "mean"}, "baseline"),
        (
            "bert",
            {"method": "integrated_gradients", "integration": "riemann_trapezoid", "steps": 1},
            "steps",
        ),
        ("bert", {"method": "integrated_gradients", "steps": 513}, "steps"),
        ("bert", {"method": "integrated_gradients", "steps": -3}, "steps"),
        ("bert", {"method": "gradient_shap", "samples": 513}, "samples"),
        ("bert", {"method": "gradient_shap", "stdev": -0.1}, "stdev"),
        ("bert", {**TOLERANT, "completeness_tolerance": 1.0}, "completeness_tolerance"),
        ("bert", {**TOLERANT, "completeness_tolerance": -0.1}, "completeness_tolerance"),
        ("bert", {**TOLERANT, "completeness_tolerance": float("nan")}, "completeness_tolerance"),
        ("bert", {**TOLERANT, "integration": "gausslegendre"}, "integration"),
        ("bert", {**TOLERANT, "steps": 24}, "steps"),
        (
            "bert",
            {"token_attributions": False, "sentence_attributions": True, "faithfulness": True},
            "faithfulness",
        ),
        ("distilbert", {"method": "integrated_gradients"}, "method"),
        ("distilbert", {"method": "gradient_shap"}, "method"),
    ],
)
def test_method_fields_are_refused_naming_the_field(stub, model, fields, field):
    fields = {"token_attributions": True, **fields}
    request = pb.AttributeRequest(model=model, texts=TEXTS[:1], **fields)
    with pytest.raises(grpc.RpcError) as info:
        stub.Attribute(request, timeout=60)
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert bad_request_fields(error) == [field]
    assert error_details(error).field == field


def test_an_artifact_without_the_path_graph_still_serves_input_x_gradient(stub):
    for method in ("", "input_x_gradient"):
        (result,) = attribute(stub, "distilbert", texts=TEXTS[:1], method=method)
        assert result.method == "input_x_gradient" and len(result.tokens) > 2
        assert np.abs(served_raw(result)).max() > 0


# ---- one forward per point for every label; steps chosen per text ----


@pytest.mark.parametrize(
    "fields",
    [
        {"method": "integrated_gradients", "steps": 12},
        {"method": "gradient_shap", "samples": 6, "seed": 11},
    ],
)
def test_shared_forward_equals_one_row_per_label(stub, server, fields):
    """Every label from one path labels graph row per point equals each label asked alone (a
    path graph row of its own), to 1e-5 of the largest score; the gaps too."""
    names = ["label_0", "label_1", "label_2"]
    batcher = server.running.registry.models["bert"].batcher
    before = batcher.calls
    together = attribute(stub, "bert", baseline="zeros", **fields)
    calls = list(batcher.history)[-(batcher.calls - before) :]
    assert ATTRIBUTION_PATH_LABELS in {call.graph for call in calls}
    alone = {
        name: attribute(stub, "bert", baseline="zeros", labels=[name], **fields) for name in names
    }
    for index, result in enumerate(together):
        raw = served_raw(result)
        scale = np.abs(raw).max()
        for k, name in enumerate(names):
            single = alone[name][index]
            assert list(single.labels) == [name]
            np.testing.assert_allclose(raw[k], served_raw(single)[0], rtol=0, atol=1e-5 * scale)
            np.testing.assert_allclose(
                result.completeness_gaps[k], single.completeness_gaps[0], rtol=0, atol=1e-5 * scale
            )


def relative_gaps(result: pb.TextResult) -> np.ndarray:
    """|gap| / |f(x) - f(b)| per label; f(x) - f(b) = the scores' sum - the gap."""
    gaps = np.array(result.completeness_gaps, dtype=np.float64)
    return np.abs(gaps) / np.abs(served_raw(result).sum(-1) - gaps)


@pytest.mark.parametrize(("model", "baseline"), [("bert", "zeros"), ("deberta-v2", "pad")])
def test_steps_chosen_per_text_reach_the_tolerance(stub, model, baseline):
    """A text refined to the tolerance reaches it, at the steps it reports, and its scores are
    those of a fixed Fejer request at those steps (the points already run are
    reused, none is lost); a tolerance out of reach stops at the most steps, marked."""
    tolerance = 1e-3
    results = attribute(
        stub, model, method="integrated_gradients", completeness_tolerance=tolerance,
        baseline=baseline, steps=128,
    )  # fmt: skip
    if model == "deberta-v2":  # its integrand is far from straight: texts refine
        assert max(result.steps for result in results) > 8
    for result in results:
        assert result.steps in (8, 16, 32, 64, 128)
        assert not result.tolerance_missed
        assert relative_gaps(result).max() <= tolerance
        (fixed,) = attribute(
            stub, model, texts=[result.text], method="integrated_gradients", baseline=baseline,
            integration="fejer", steps=result.steps,
        )  # fmt: skip
        expected = served_raw(fixed)
        np.testing.assert_allclose(
            served_raw(result), expected, rtol=0, atol=1e-5 * np.abs(expected).max()
        )
        if result.steps > 8:  # refined: the level below had not reached it
            (coarser,) = attribute(
                stub, model, texts=[result.text], method="integrated_gradients",
                baseline=baseline, integration="fejer", steps=result.steps // 2,
            )  # fmt: skip
            assert relative_gaps(coarser).max() > tolerance
    out_of_reach = attribute(
        stub, model, method="integrated_gradients", completeness_tolerance=1e-12,
        baseline=baseline, steps=16,
    )  # fmt: skip
    for result in out_of_reach:
        assert result.steps == 16 and result.tolerance_missed


def test_path_rows_are_cut_to_the_token_budget(stub, server, engine_for):
    """A request's path rows run in calls within the batcher's token budget (a row holding K
    cotangents counts as the path graph rows its work equals; a row over the budget alone runs
    alone), and give the answer of one large call."""
    budget = 96
    small_calls = BatchSettings(max_batch_size=512, max_tokens_per_batch=budget)
    fields = {"method": "integrated_gradients", "steps": 8, "baseline": "zeros"}
    expected = attribute(stub, "bert", **fields)
    results, calls = _path_labels_calls(engine_for, small_calls, fields)
    assert len(calls) > len(TEXTS)  # cut: more calls than texts
    assert {call.weight for call in calls if call.rows == 1} >= {
        shared_row_weight(len(expected[0].labels)),  # a point's row
        shared_row_weight(0),  # a baseline row: the forward only
    }
    for call in calls:
        assert call.rows == 1 or call.weight * call.width <= budget, call
    _assert_same_scores(results, expected)


def test_path_rows_of_several_texts_fill_shared_calls(stub, server, engine_for):
    """A text whose path rows overflow a call fills the next call with the next text's rows
    (path rows are packed by width and call cost, not kept per text): with a call cost that
    outweighs padding, a request's rows run in as few calls as the row limit allows, and the
    answer is that of the server's default calls."""
    fields = {"method": "integrated_gradients", "steps": 14, "baseline": "zeros"}
    expected = attribute(stub, "bert", **fields)
    weight = shared_row_weight(len(expected[0].labels))
    per_call = 4  # path labels rows a call holds
    packed = BatchSettings(max_batch_size=per_call * weight, call_cost_tokens=100_000)
    results, calls = _path_labels_calls(engine_for, packed, fields)
    assert fields["steps"] % per_call  # a text's points alone do not fill their calls
    # the baseline rows (no cotangent, weight 1) in a call of their own
    assert [call.rows for call in calls if call.weight == call.rows] == [len(TEXTS)]
    points = [call.rows for call in calls if call.weight != call.rows]
    assert sum(points) == len(TEXTS) * fields["steps"]
    assert len(points) == -(-sum(points) // per_call), calls
    _assert_same_scores(results, expected)


def _path_labels_calls(
    engine_for, batch: BatchSettings, fields: dict
) -> tuple[list[pb.TextResult], list[CallRecord]]:
    """``fields`` asked of the tiny bert on a server of its own with ``batch``: the results and
    its path labels graph's calls."""
    with ServerThread({"bert": engine_for("bert")}, ServerSettings(port=0, batch=batch)) as running:
        channel = grpc.insecure_channel(running.address)
        try:
            results = attribute(AttributorStub(channel), "bert", **fields)
        finally:
            channel.close()
        batcher = running.running.registry.models["bert"].batcher
        calls = [call for call in batcher.history if call.graph == ATTRIBUTION_PATH_LABELS]
    return results, calls


def _assert_same_scores(results: list[pb.TextResult], expected: list[pb.TextResult]) -> None:
    """Each result's raw scores as the expected one's, to 1e-5 of its largest."""
    for got, want in zip(results, expected, strict=True):
        scale = np.abs(served_raw(want)).max()
        np.testing.assert_allclose(served_raw(got), served_raw(want), rtol=0, atol=1e-5 * scale)
