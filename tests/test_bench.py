"""``gradlight bench``: its corpus, its eager methods, its statistics and a real quick run.

The end-to-end runs use the tiny test models (timings are meaningless there; what is checked
is that every method measured every cell on the same tokens, that the answers agree with the
reference, and that every output file is written and well-formed).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from gradlight.bench import corpus, workload
from gradlight.bench.stats import latency, paired_ratio
from gradlight.bench.targets import judge
from gradlight.runtime.execution.cpu_features import native_bf16
from gradlight.runtime.execution.tokenization import TextEncoder
from gradlight.runtime.explanation.sentences import split_sentences


@pytest.fixture(scope="module")
def minilm_encoder() -> TextEncoder:
    from gradlight.demo.minilm import minilm_encoder_dir

    return TextEncoder(minilm_encoder_dir() / "tokenizer.json")


def test_the_corpus_spreads_from_one_short_sentence_to_long_notes(minilm_encoder):
    notes = corpus.notes(400)
    assert notes == corpus.notes(400)  # the same texts on every machine
    assert len(set(notes)) > 350
    lengths = [len(row) for row in minilm_encoder.encode(notes, 512)]
    assert min(lengths) <= 10
    assert max(lengths) >= 200
    assert 40 <= float(np.median(lengths)) <= 90
    sentences = [len(split_sentences(note)) for note in notes]
    assert min(sentences) == 1
    assert max(sentences) == 8
    assert sum("patient" in note.lower() for note in notes) > sum(
        "meeting" in note.lower() for note in notes
    )


def test_sweep_and_sentence_texts_are_what_their_cells_claim(minilm_encoder):
    long = corpus.long_texts(8)
    assert min(len(row) for row in minilm_encoder.encode(long, 512)) > 256
    for note in corpus.notes_of(5, 8):
        assert len(split_sentences(note)) == 5


def test_cells_are_fitted_to_the_models_positions():
    plan = workload.Plan.quick()
    cells = workload.mix_cells(plan, first=True) + workload.length_cells(plan)
    fitted = workload.fit(cells, 64)
    assert {cell["max_length"] for cell in fitted} == {16, 64}
    assert [cell["name"] for cell in fitted if cell["group"] == "length"] == ["length 16"]


def test_ratios_are_taken_batch_by_batch():
    slower = [[0.4, 0.5, 0.6], [4.0, 4.0]]  # medians 0.5 and 4.0
    faster = [[0.1, 0.1], [1.0, 2.0, 1.0]]  # medians 0.1 and 1.0
    assert paired_ratio(slower, faster) == pytest.approx(4.5)  # median of 5 and 4
    summary = latency([0.001 * i for i in range(1, 101)])
    assert summary["median_ms"] == pytest.approx(50.5)
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["calls"] == 100


def test_targets_are_judged_on_the_reports_figures():
    def cell(group, **extra):
        return {"group": group, "name": group, "batch_size": 8, **extra}

    best = {"best_engine": "engine-int8", "best_eager": "eager-bf16"}
    report = {
        "runs": [
            {
                "model": "m",
                "labels": 2,
                "cells": [
                    cell(
                        "mix",
                        speedup={"best engine vs reference": 6.0, "best engine vs best eager": 1.6},
                        methods={
                            "engine": {"texts_per_second": 10.0, "attribution_over_forward": 3.6},
                            "engine-int8": {"attribution_over_forward": 2.1},
                        },
                        **best,
                    ),
                    cell(
                        "length",
                        speedup={"best engine vs best eager": 1.4},
                        methods={"engine-int8": {}},
                        **best,
                    ),
                    cell(
                        "mix-sentences",
                        speedup={"best engine vs reference": 4.0},
                        methods={"reference": {"texts_per_second": 0.5}, "engine": {}},
                        best_engine="engine",
                    ),
                ],
                "served": [
                    {"clients": 32, "texts_per_second": 9.0},
                    {"clients": 32, "sentences": True, "texts_per_second": 3.1},
                ],
            }
        ]
    }
    targets = judge(report)
    status = {target["target"]: target["status"] for target in targets}
    assert list(status.values()) == [
        "missed", "met", "met", "missed", "missed", "met", "not measured",
    ]  # fmt: skip
    # in process, the mix with sentences counts as the mix: 6.0 met, 4.0 missed
    assert [row["met"] for row in targets[0]["rows"]] == [True, False]
    # served with sentences, against the reference answering the same one text at a time
    (served,) = targets[1]["rows"]
    assert served["measured"] == 6.2
    assert served["where"] == "m, L=2, 32 clients: 3.1 vs reference 0.5 texts/s"
    # judged on the best engine against the cell's best eager, and said so
    (equal_padding,) = targets[2]["rows"]
    assert equal_padding["where"] == "m, L=2, length (engine-int8 vs eager-bf16)"
    assert [row["met"] for row in targets[3]["rows"]] == [True, False]  # 1.6 and 1.4 vs 1.5
    # the served ratio is against the served precision's engine (fp32 here), tokens only
    assert [row["measured"] for row in targets[5]["rows"]] == [0.9]
    # the cost is fp32 over fp32, not a reduced precision's attribution over the fp32 forward
    assert [row["measured"] for row in targets[4]["rows"]] == [3.6]


def test_the_reference_pads_to_128_and_eager_best_to_the_longest(tiny_model_dirs):
    from gradlight.bench.eager import EagerMethod

    model_dir = tiny_model_dirs["bert"]  # 64 positions: the reference pads to 64 there
    texts = ["alpha beta", "alpha beta gamma delta epsilon"]
    reference = EagerMethod(model_dir, "reference")
    best = EagerMethod(model_dir, "eager-best")
    assert reference._inputs(texts, 32)["input_ids"].shape[1] == 64
    width = best._inputs(texts, 32)["input_ids"].shape[1]
    assert width == int(best._inputs(texts, 32)["attention_mask"].sum(-1).max())
    assert all(p.requires_grad for p in reference.model.parameters())
    assert not any(p.requires_grad for p in best.model.parameters())
    a, b = reference.attribute(texts, 32), best.attribute(texts, 32, labels=[1])
    # probabilities of the attributed labels only, as the server answers
    np.testing.assert_allclose(a.probabilities[:, 1:2], b.probabilities, atol=1e-6)
    for full, subset in zip(a.scores, b.scores, strict=True):
        np.testing.assert_allclose(full[1:2], subset, atol=1e-5)


def _max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a.scores, b.scores, strict=True))


def test_the_sdpa_anchor_computes_what_the_reference_does(tiny_model_dirs):
    from gradlight.bench.eager import EagerMethod

    texts = corpus.notes(4)
    reference = EagerMethod(tiny_model_dirs["bert"], "reference").attribute(texts, 64)
    sdpa = EagerMethod(tiny_model_dirs["bert"], "eager-best-sdpa")
    assert sdpa.attention == "sdpa" and not sdpa.bf16
    answer = sdpa.attribute(texts, 64)
    np.testing.assert_allclose(answer.probabilities, reference.probabilities, atol=1e-6)
    assert _max_diff(answer, reference) < 1e-5


@pytest.mark.skipif(
    not native_bf16(),
    reason="this CPU has neither avx512_bf16 nor amx_bf16: the bench skips the bf16 anchors "
    "here (autocast would emulate bf16)",
)
@pytest.mark.parametrize(
    ("name", "attention"), [("eager-bf16", "eager"), ("eager-bf16-sdpa", "sdpa")]
)
def test_the_bf16_anchors_run_under_autocast_close_to_fp32(tiny_model_dirs, name, attention):
    from gradlight.bench.eager import EagerMethod

    texts = corpus.notes(4)
    reference = EagerMethod(tiny_model_dirs["bert"], "reference").attribute(texts, 64)
    anchor = EagerMethod(tiny_model_dirs["bert"], name)
    assert anchor.bf16 and anchor.attention == attention
    assert anchor.forward(texts[:1], 64).dtype == np.float32  # bf16 logits, handed back as fp32
    answer = anchor.attribute(texts, 64)
    assert all(scores.dtype == np.float32 for scores in answer.scores)
    # bf16 changes the numbers (autocast is on), a little
    assert 0 < _max_diff(answer, reference) < 0.05
    assert 0 < float(np.max(np.abs(answer.probabilities - reference.probabilities))) < 0.01


def test_an_anchor_that_cannot_run_here_is_reported_with_the_reason(
    tiny_model_dirs, monkeypatch, tmp_path
):
    import torch

    from gradlight.bench import anchors, worker

    job = {
        "method": "eager-best-sdpa", "role": "eager", "precision": "fp32",
        "model_dir": str(tiny_model_dirs["deberta-v2"]), "provider": "cpu",
        "threads": torch.get_num_threads(), "cells": [],
    }  # fmt: skip
    replies = io.StringIO()
    worker.take_turns(job, tmp_path / "result.json", io.StringIO(), replies)
    result = json.loads((tmp_path / "result.json").read_text())
    assert set(result) == {"method", "unavailable"}
    assert "does not support" in result["unavailable"] and "sdpa" in result["unavailable"]
    assert json.loads(replies.getvalue()) == {"loaded": False, **result}
    monkeypatch.setattr(anchors, "native_bf16", lambda: False)
    assert anchors.unavailable_here("eager-best") is None
    assert "avx512_bf16, amx_bf16" in anchors.unavailable_here("eager-bf16")
    assert "cuda" in anchors.unavailable_here("eager-bf16-sdpa", "cuda")


def test_the_engine_method_answers_through_the_servers_api(tiny_model_dirs, exported):
    """What is timed is what is served: the request goes through the API (counted in the
    server's metrics) and the dynamic batcher, and answers as eager PyTorch does."""
    from gradlight.bench.eager import EagerMethod
    from gradlight.bench.methods import EngineMethod

    texts = corpus.notes(4)
    reference = EagerMethod(tiny_model_dirs["bert"], "reference")
    method = EngineMethod(exported("bert"), "cpu", 1)
    try:
        answer = method.attribute(texts, 64)
        subset = method.attribute(texts, 64, labels=[0, 2])
        method.forward(texts, 64)
        metrics = method.api.metrics.registry

        def answered(api_method):
            labels = {"model": "engine", "method": api_method, "code": "OK"}
            return metrics.get_sample_value("gradlight_requests_total", labels)

        assert (answered("Attribute"), answered("Predict")) == (2, 1)
        assert method.api.registry.models["engine"].batcher.calls >= 3
    finally:
        method.close()
    full = reference.attribute(texts, 64)
    np.testing.assert_allclose(answer.probabilities, full.probabilities, atol=1e-5)
    assert _max_diff(answer, full) < 1e-4
    picked = reference.attribute(texts, 64, labels=[0, 2])
    assert subset.probabilities.shape == (4, 2)
    np.testing.assert_allclose(subset.probabilities, picked.probabilities, atol=1e-5)
    assert _max_diff(subset, picked) < 1e-4


def test_the_engine_worker_never_imports_torch(exported, tmp_path):
    plan = workload.Plan.quick()
    cells = workload.with_methods(
        workload.fit(workload.mix_cells(plan, first=False), 64), {"engine": "engine"}
    )
    job = {
        "method": "engine", "role": "engine", "precision": "fp32", "model_name": "bert",
        "labels": 3, "model_dir": "",
        "artifact": str(exported("bert")), "provider": "cpu", "threads": 1, "cells": cells,
        "min_repeats": 1, "max_repeats": 1, "cell_budget_s": 0.0,
    }  # fmt: skip
    (tmp_path / "job.json").write_text(json.dumps(job))
    code = (
        "import sys; sys.modules['torch'] = None; "
        "from gradlight.bench import worker; worker.main(); "
        "assert 'transformers' not in sys.modules"
    )
    commands = [{"round": "mix, batch 8", "warmup": True}, {"round": "mix, batch 8"}]
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "job.json"), str(tmp_path / "out.json")],
        input="".join(json.dumps(c) + "\n" for c in [*commands, {"finish": True}]),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert replies[0]["loaded"] and replies[1:] == [
        {"done": "mix, batch 8"}, {"done": "mix, batch 8"}, {"finished": True},
    ]  # fmt: skip
    measured = json.loads((tmp_path / "out.json").read_text())
    assert [c["cell"] for c in measured["cells"]] == ["mix, batch 8"]
    assert len(measured["cells"][0]["attribute"]) == 2  # 16 texts in batches of 8
    assert measured["peak_rss_mb"] >= measured["rss_loaded_mb"] > 0
    assert measured["machine"]["cpu"] and measured["machine"]["threads"] == 1


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gradlight.cli.main", "bench", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd)


def test_the_profile_splits_a_graphs_time_by_what_its_operators_do(exported):
    """What explains a missed target: the weight and attention matrix products (with their
    FLOP rates), the attention-sized elementwise nodes and the rest, from ORT's profiler."""
    from gradlight.bench.profile import PARTS, profile

    result = profile(exported("bert"), "attribution", batch=2, length=24, runs=2, threads=1)
    parts = {row["part"]: row for row in result["parts"]}
    assert set(parts) == set(PARTS)
    assert sum(row["share"] for row in parts.values()) == pytest.approx(1, abs=1e-3)
    assert all(row["ms_per_run"] > 0 for row in parts.values())
    assert parts[PARTS[0]]["gflop_per_s"] > 0 and parts[PARTS[1]]["gflop_per_s"] > 0
    assert {row["op"] for row in result["by_op_type"]} >= {"Softmax", "Gemm"}


def test_a_quick_bench_measures_every_method_on_the_same_tokens(
    tiny_model_dirs, exported, tmp_path
):
    """Two anchors (fp32 eager attention; bf16 with SDPA where the CPU has native bf16) keep
    it short; an engine precision the artifact lacks is reported, not failed."""
    out = tmp_path / "out"
    result = _bench(
        str(tiny_model_dirs["bert"]), "--artifact", str(exported("bert")), "--quick",
        "--anchors", "eager-best", "eager-bf16-sdpa", "--precision", "fp32", "fp16",
        "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "bench.json").read_text())
    assert report["environment"]["threads"] >= 1
    assert report["environment"]["torch"] and report["environment"]["onnxruntime"]
    (run,) = report["runs"]
    assert run["labels"] == 3
    bf16 = native_bf16()
    eager = ["eager-best", "eager-bf16-sdpa"] if bf16 else ["eager-best"]
    assert run["roles"] == {
        "reference": "reference", **dict.fromkeys(eager, "eager"), "engine": "engine",
    }  # fmt: skip
    assert "no fp16 graphs" in run["unavailable"]["engine-fp16"]
    assert ("eager-bf16-sdpa" in run["unavailable"]) is not bf16
    assert {m: info["peak_rss_mb"] > 0 for m, info in run["methods"].items()} == dict.fromkeys(
        run["roles"], True
    )
    names = [cell["name"] for cell in run["cells"]]
    assert names == [
        "mix, batch 1", "mix, batch 8", "mix with sentences, batch 1", "length 16",
        "sentences, 5 per text",
    ]  # fmt: skip
    machine = run["methods"]["engine"]["machine"]
    assert machine["cpu"] and machine["threads"] == report["environment"]["threads"]
    assert set(machine["isa"]) <= {
        "avx2",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "amx_bf16",
        "amx_int8",
    }
    for cell in run["cells"]:
        expected = {"sentences": 3, "mix-sentences": 2}.get(cell["group"], len(run["roles"]))
        assert len(cell["methods"]) == expected
        for entry in cell["methods"].values():
            assert entry["texts_per_second"] > 0
            assert entry["latency"]["median_ms"] > 0
            assert entry["machine"] == machine | {"threads": entry["machine"]["threads"]}
    # every method of a cell ran its round k before any ran round k + 1: in turns, not one
    # method's rounds after another's
    raw = {
        method: json.loads((out / "raw" / f"bert-{method}.json").read_text())
        for method in run["roles"]
    }
    rounds = []
    for name in names:
        starts = [
            c["rounds_started"] for r in raw.values() for c in r["cells"] if c["cell"] == name
        ]
        assert len(starts) >= 2 and len({len(s) for s in starts}) == 1
        rounds.append(len(starts[0]))
        for k in range(len(starts[0]) - 1):
            assert max(s[k] for s in starts) < min(s[k + 1] for s in starts)
    assert max(rounds) >= 2  # the quick plan's budget gives the tiny model several rounds
    mix = run["cells"][1]
    # best eager: the eager anchor with the least time, the reference excluded
    assert mix["best_eager"] == min(eager, key=lambda m: mix["methods"][m]["ms_per_text"])
    assert mix["best_engine"] == "engine"
    assert set(mix["speedup"]) == {
        *(f"{m} vs best eager" for m in run["roles"]),
        *(f"{m} vs reference" for m in run["roles"] if m != "reference"),
        "best engine vs reference", "best engine vs best eager",
    }  # fmt: skip
    assert mix["speedup"][f"{mix['best_eager']} vs best eager"] == 1.0
    assert mix["speedup"]["best engine vs best eager"] == mix["speedup"]["engine vs best eager"]
    assert mix["methods"]["engine"]["attribution_over_forward"] > 0
    for method in ("engine", "eager-best"):
        agreement = mix["agreement_with_reference"][method]
        assert agreement["compared"] == 16 + 2  # 16 texts' scores, 2 batches' probabilities
        assert agreement["max_abs_diff_scores"] < 1e-4
        assert agreement["top3_agreement"] == 1.0
        assert agreement["max_abs_diff_probabilities"] < 1e-5
    if bf16:  # what bf16 costs in accuracy, against the fp32 reference
        agreement = mix["agreement_with_reference"]["eager-bf16-sdpa"]
        assert 0 < agreement["max_abs_diff_scores"] < 0.05
        assert agreement["top3_agreement"] >= 0.9
    sentences = run["cells"][4]["agreement_with_reference"]
    assert max(v["max_abs_diff_sentence_scores"] for v in sentences.values()) < 1e-5
    # token and sentence attributions in one request, against the reference's answers
    both = run["cells"][2]
    assert set(both["methods"]) == {"reference", "engine"} and both["texts"] == 16
    agreement = both["agreement_with_reference"]["engine"]
    assert agreement["compared"] == 3 * 16  # per text: token scores, sentence scores, probabilities
    assert agreement["max_abs_diff_sentence_scores"] < 1e-5
    assert agreement["top3_agreement"] == 1.0
    assert [(level["clients"], level["sentences"]) for level in run["served"]] == [
        (1, False), (8, False), (8, True),
    ]  # fmt: skip
    assert all(level["requests"] == 32 for level in run["served"])
    assert all(level["machine"]["cpu"] == machine["cpu"] for level in run["served"])
    statuses = {target["target"]: target["status"] for target in report["targets"]}
    assert len(statuses) == 7
    served = report["targets"][1]
    assert served["status"] != "not measured" and served["rows"][0]["measured"] > 0
    with (out / "bench.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * len(run["roles"]) + 2 + 3 + 3
    assert {row["method"] for row in rows} >= {*run["roles"], "served"}
    for row in rows:  # every figure row says what it ran on
        assert row["cpu"] == machine["cpu"] and int(row["threads"]) >= 1
        assert row["isa"] == " ".join(machine["isa"])
    assert {row["best_eager"] for row in rows if row["cell"] == "mix, batch 8"} == {
        mix["best_eager"]
    }
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "bench.png").stat().st_size > 20_000
    table = (out / "bench.md").read_text()
    assert "| target | threshold | status | measured |" in table
    assert "| x vs reference | x vs best eager |" in table
    assert f"- M1: {machine['cpu']}, " in table
    assert f"| mix, batch 8 | {mix['best_eager']} (best eager) | M1 |" in table
    assert "engine-fp16 not measured: " in table
    assert table in result.stdout


def test_bench_reheads_the_model_and_measures_the_label_subset_path(tiny_model_dirs, tmp_path):
    out = tmp_path / "out"
    args = ["--quick", "--labels", "4", "--subset-labels", "12", "--texts", "8", "--out", str(out)]
    args += ["--anchors", "eager-best"]
    result = _bench(str(tiny_model_dirs["bert"]), *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "bench.json").read_text())
    assert [(run["model"], run["labels"]) for run in report["runs"]] == [
        ("bert-L4", 4), ("bert-L12", 12),
    ]  # fmt: skip
    (subset,) = report["runs"][1]["cells"]
    assert subset["name"] == "3 of 12 labels" and subset["labels"] == [0, 1, 2]
    for method in ("engine", "eager-best"):
        assert subset["agreement_with_reference"][method]["max_abs_diff_scores"] < 1e-4
    # A second run reuses the exported artifacts (checksums verified) instead of exporting.
    again = _bench(str(tiny_model_dirs["bert"]), *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "exporting" not in again.stderr
    assert again.stderr.count("reusing the artifact") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent"], "has no config.json"),
        (["MODEL", "--artifact", "/nonexistent"], "has no manifest.json"),
        (["MODEL", "--labels", "0"], "must be 1 or more"),
        (["MODEL", "--provider", "tpu"], "invalid choice"),
        (["MODEL", "--precision", "int4"], "--precision must be one of fp32"),
        (["MODEL", "--anchors", "eager-fast"], "invalid choice"),
    ],
)
def test_bench_usage_errors_name_the_argument(tiny_model_dirs, tmp_path, args, message):
    args = [str(tiny_model_dirs["bert"]) if a == "MODEL" else a for a in args]
    result = _bench(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_integrated_gradients_compares_captum_eager_best_and_gradlight(
    tiny_model_dirs, exported, tmp_path
):
    from gradlight.bench import integrated, integrated_report
    from gradlight.bench.report import integrated_rows

    texts = ["No fever.", "The patient denies chest pain and shortness of breath.", "Cough."]
    options = integrated.IGOptions(
        steps=4, label_counts=(3,), batches=(2,), faithful_batch=3, max_steps=8,
        faithful_eager_steps=4, captum_steps=4, reference_steps=8,
        min_repeats=1, max_repeats=1, budget_s=0.0, threads=1,
    )  # fmt: skip
    section = integrated.measure(
        tiny_model_dirs["bert"], exported("bert"), options, tmp_path, lambda _: None, texts
    )
    fixed, faithful = section["cells"]
    bf16 = native_bf16()
    ways = ["captum", "eager-best", *(["eager-bf16"] if bf16 else []), "gradlight"]
    assert [row["method"] for row in fixed["rows"]] == ways
    assert bf16 or "eager-bf16" in fixed["not_measured"]
    assert fixed["labels"] == [0, 1, 2] and fixed["batch"] == 2 and fixed["texts"] == 3
    assert fixed["lengths"]["min"] < fixed["lengths"]["max"]  # the eager ways pad
    # The same computation: raw scores within 1e-4 of each text's and label's largest |score|.
    assert set(fixed["max_relative_difference"]) == {
        "eager-best vs captum", "gradlight vs captum", "gradlight vs eager-best",
    }  # fmt: skip
    assert max(fixed["max_relative_difference"].values()) < 1e-4
    for row in fixed["rows"]:
        assert row["texts_per_s"] > 0 and row["batch_latency"]["calls"] == 2  # 2 batches
        assert row["steps"] == 4 and row["peak_rss_mb"] > 0
        assert 0 < row["ms_per_text"]["median"] <= row["ms_per_text"]["p90"]
    assert section["machine"]["cpu"] and section["machine"]["threads"] == 1
    assert isinstance(section["machine"]["cpu_flags"], list)
    by_method = {row["method"]: row for row in fixed["rows"]}
    assert by_method["captum"]["padded_over_real_tokens"] > 1.0
    assert by_method["captum"]["rows_per_call"] == 8  # every point: 4 steps x 2 texts
    assert by_method["eager-best"]["attention"] in ("sdpa", "eager")
    if bf16:
        assert 0 <= by_method["eager-bf16"]["top3_vs_eager_fp32"] <= 1
    assert fixed["best_eager"] in ("eager-best", "eager-bf16")
    assert {v["target"] for v in fixed["verdicts"]} == {"served_vs_best_eager", "served_vs_captum"}
    assert all(v["status"] in ("met", "missed") for v in fixed["verdicts"])
    # Time to a faithful explanation: the steps per text gradlight chose, and every way's
    # agreement with the untimed reference and completeness gaps.
    assert faithful["group"] == "faithful" and faithful["texts"] == 3
    faithful_by_method = {row["method"]: row for row in faithful["rows"]}
    assert faithful_by_method["gradlight"]["tolerance"] == 0.01
    for row in faithful["rows"]:
        assert 0 <= row["top3_vs_reference"] <= 1 and row["median_relative_gap"] >= 0
    assert faithful_by_method["captum"]["top3_vs_reference"] >= 0.9  # 4 steps of a tiny model
    assert faithful["reference_median_relative_gap"] < 0.05
    assert 0 <= faithful["gradlight_missed"] <= 3
    steps = faithful.get("gradlight_steps")  # absent where the runtime reports no steps
    assert steps is None or 1 <= steps["min"] <= steps["max"] <= 8
    targets = {target["key"]: target for target in section["targets"]}
    assert len(targets) == 4 and all(t["status"] in ("met", "missed") for t in targets.values())
    table = integrated_report.markdown(section)
    assert table.count("| captum |") == 2 and table.count("| gradlight |") == 2
    assert section["machine"]["cpu"] in table and "Time to a faithful explanation" in table
    assert [row["method"] for row in integrated_rows({"integrated_gradients": section})] == [
        *(f"ig-{way}" for way in ways), *(f"ig-{way}" for way in ways),
    ]  # fmt: skip


def test_length_classes_cut_the_corpus_to_about_n_tokens(minilm_encoder):
    from gradlight.bench.integrated_cells import length_texts

    for tokens in (30, 128, 512):
        texts = length_texts(minilm_encoder, tokens, 4)
        assert texts == length_texts(minilm_encoder, tokens, 4)  # the same on every machine
        assert len(set(texts)) == 4
        lengths = [len(row) for row in minilm_encoder.encode(texts, 100_000)]
        assert all(tokens - 8 <= n <= tokens for n in lengths), lengths
        assert all(not text.endswith(" ") for text in texts)


def test_top3_agreement_relative_gaps_and_rows_per_call():
    from gradlight.bench.integrated_cells import relative_gaps, rows_per_call, top3_agreement

    reference = {"0|0": np.array([[5.0, -4.0, 3.0, 0.1, 0.0], [0.0, 1.0, 2.0, 3.0, 4.0]])}
    same_order = {"0|0": reference["0|0"] * 2}
    one_swapped = {"0|0": np.array([[5.0, -4.0, 0.1, 3.5, 0.0], [0.0, 1.0, 2.0, 3.0, 4.0]])}
    assert top3_agreement(reference, same_order) == 1.0
    assert top3_agreement(reference, one_swapped) == pytest.approx((2 / 3 + 1) / 2, abs=1e-4)
    short = {"0|0": np.array([[1.0, 2.0]])}
    assert top3_agreement(short, short) == 1.0  # fewer than 3 tokens: all of them
    deltas = {"0|0": np.array([4.0, -10.0])}  # sums 4.1 and 10.0
    assert relative_gaps(reference, deltas) == pytest.approx([0.1 / 4, 2.0])
    assert rows_per_call(32 * 8, 8, 128, 0, 0) == 256  # every point of the batch
    assert rows_per_call(32 * 8, 8, 512, 0, 32768) == 64  # capped, whole steps of the batch
    assert rows_per_call(32, 1, 512, 0, 32768) == 32
    assert rows_per_call(32 * 8, 8, 512, 40, 32768) == 40  # as the user says


def _fake_cell(group: str, rounds: dict[str, float]) -> tuple[dict, dict]:
    """A cell of 2 texts, 1 a call, and each way's worker result with the given round time."""
    name = f"{group}-L2-b1-30"
    cell = {
        "name": name, "group": group, "L": 2, "labels": [0, 1], "batch": 1,
        "length": 30 if group == "fixed" else "mix", "max_length": 30,
        "batches": [["a"], ["b"]], "tokens": [[10], [12]], "methods": list(rounds),
        "not_measured": {}, "title": f"{group} cell",
        "asks": {
            m: {"steps": 32, "integration": "gausslegendre", "rows_per_call": 32}
            for m in rounds
        },
    }  # fmt: skip
    results = {
        m: {
            "peak_rss_mb": 500.0,
            "cells": {
                name: {
                    "times": [[seconds / 2], [seconds / 2]],
                    "rounds": [seconds],
                    "peak_rss_mb": 400.0,
                    "attention": "sdpa",
                    "text_steps": [8, 16],
                    "tolerance_missed": [False, True],
                }
            },
        }
        for m, seconds in rounds.items()
    }
    return cell, results


def test_integrated_verdicts_best_eager_and_bf16_kept_on_a_hand_made_section():
    from gradlight.bench.integrated import IGOptions
    from gradlight.bench.integrated_report import markdown
    from gradlight.bench.integrated_summary import judge, summarize_cell
    from gradlight.bench.report import integrated_rows

    fp32 = np.array([[5.0, 4.0, 3.0, 0.1, 0.0], [5.0, 4.0, 3.0, 0.1, 0.0]])
    other = np.array([[5.0, 4.0, 0.0, 3.0, 0.1], [5.0, 4.0, 0.0, 3.0, 0.1]])  # 2 of 3 agree
    # Fixed steps: eager-bf16 is fastest but agrees 0.67 < 0.95, so eager-best is the best.
    rounds = {"captum": 1.0, "eager-best": 0.4, "eager-bf16": 0.2, "gradlight": 0.25}
    fixed, fixed_results = _fake_cell("fixed", rounds)
    scores = {m: {fixed["name"]: {"0|0": fp32, "1|0": fp32}} for m in rounds}
    scores["eager-bf16"][fixed["name"]] = {"0|0": other, "1|0": other}
    first = summarize_cell(fixed, fixed_results, scores, {})
    by_method = {row["method"]: row for row in first["rows"]}
    assert by_method["eager-bf16"]["kept"] is False
    assert by_method["eager-bf16"]["top3_vs_eager_fp32"] == pytest.approx(2 / 3, abs=1e-3)
    assert first["best_eager"] == "eager-best"
    assert by_method["gradlight"]["texts_per_s"] == 8.0
    assert by_method["gradlight"]["ms_per_text"] == {"median": 125.0, "p90": 125.0}
    assert by_method["gradlight"]["peak_rss_mb"] == 400.0
    verdicts = {v["target"]: v for v in first["verdicts"]}
    assert verdicts["served_vs_best_eager"] == {
        "target": "served_vs_best_eager", "threshold": 1.0, "status": "met", "measured": 1.6,
        "against": "eager-best",
    }  # fmt: skip
    assert verdicts["served_vs_captum"]["status"] == "missed"  # 4x < 5x
    # Faithful: Captum not measured (skipped), gradlight 3x the best eager.
    rounds = {"eager-best": 0.6, "gradlight": 0.2}
    faithful, faithful_results = _fake_cell("faithful", rounds)
    faithful["not_measured"] = {"captum": "texts above --captum-max-tokens 16"}
    name = faithful["name"]
    scores = {m: {name: {"0|0": fp32, "1|0": other}} for m in (*rounds, "reference")}
    deltas = {name: {"0|0": np.array([12.0, 12.0]), "1|0": np.array([12.1, 12.0])}}
    second = summarize_cell(faithful, faithful_results, scores, deltas)
    assert second["gradlight_steps"] == {
        "min": 8, "median": 12.0, "max": 16, "histogram": {"8": 1, "16": 1},
    }  # fmt: skip
    assert second["gradlight_missed"] == 1
    assert {row["top3_vs_reference"] for row in second["rows"]} == {1.0}
    verdicts = {v["target"]: v for v in second["verdicts"]}
    assert verdicts["faithful_vs_best_eager"]["status"] == "met"
    assert verdicts["faithful_vs_best_eager"]["measured"] == 3.0
    assert verdicts["faithful_vs_captum"]["status"] == "not measured"
    targets = {t["key"]: t["status"] for t in judge([first, second])}
    assert targets == {
        "served_vs_best_eager": "met", "served_vs_captum": "missed",
        "faithful_vs_best_eager": "met", "faithful_vs_captum": "not measured",
    }  # fmt: skip
    section = {
        "model": "minilm-L10", "model_labels": 10, "model_note": "",
        "machine": {"cpu": "Test CPU", "cpu_flags": ["avx2"], "native_bf16": False,
                    "cores_available": 2, "threads": 2},
        "options": {**asdict(IGOptions(threads=2)), "baseline": "pad"},
        "methods": {"captum": {"peak_rss_mb": 500.0}, "eager-bf16": {"unavailable": "no bf16"}},
        "cells": [first, second], "targets": judge([first, second]),
    }  # fmt: skip
    text = markdown(section)
    assert "served / best eager 1.60x (target 1x: met)" in text
    assert "served / Captum 4.00x (target 5x: missed)" in text
    assert "| captum | not measured: texts above --captum-max-tokens 16" in text
    assert "top-3 vs fp32 0.667, NOT kept" in text
    assert "min 8, median 12, max 16 (8: 1, 16: 1)" in text
    assert "eager-bf16 not measured (no bf16)" in text
    rows = integrated_rows({"integrated_gradients": section})
    gradlight = [row for row in rows if row["method"] == "ig-gradlight"]
    assert [row["speedup_vs_best_eager"] for row in gradlight] == [1.6, 3.0]
    assert [row["speedup_vs_reference"] for row in gradlight] == [4.0, None]
