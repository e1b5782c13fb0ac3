"""``gradlight bench``: its corpus, its eager methods, its statistics and a real quick run.

The end-to-end runs use the tiny test models (timings are meaningless there; what is checked
is that every method measured every cell on the same tokens, that the answers agree with the
reference, and that every output file is written and well-formed).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradlight.bench import corpus, workload
from gradlight.bench.stats import latency, paired_ratio
from gradlight.bench.targets import judge
from gradlight.runtime.sentences import split_sentences
from gradlight.runtime.tokenization import TextEncoder


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

    report = {
        "runs": [
            {
                "model": "m",
                "labels": 2,
                "cells": [
                    cell(
                        "mix",
                        speedup={"engine vs reference": 6.0},
                        methods={
                            "engine": {"texts_per_second": 10.0, "attribution_over_forward": 3.6}
                        },
                    ),
                    cell("length", speedup={"engine vs eager-best": 1.2}, methods={}),
                ],
                "served": [{"clients": 32, "texts_per_second": 9.0}],
            }
        ]
    }
    status = {target["target"]: target["status"] for target in judge(report)}
    assert list(status.values()) == ["met", "missed", "missed", "met", "not measured"]


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
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
    for full, subset in zip(a.scores, b.scores, strict=True):
        np.testing.assert_allclose(full[1:2], subset, atol=1e-5)


def test_the_engine_worker_never_imports_torch(exported, tmp_path):
    plan = workload.Plan.quick()
    cells = workload.fit(workload.mix_cells(plan, first=False), 64)
    job = {
        "method": "engine", "model_name": "bert", "labels": 3, "model_dir": "",
        "artifact": str(exported("bert")), "provider": "cpu", "threads": 1, "cells": cells,
        "min_repeats": 1, "max_repeats": 1, "cell_budget_s": 0.0,
    }  # fmt: skip
    (tmp_path / "job.json").write_text(json.dumps(job))
    code = (
        "import sys; sys.modules['torch'] = None; "
        "from gradlight.bench import worker; worker.main(); "
        "assert 'transformers' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "job.json"), str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads((tmp_path / "out.json").read_text())
    assert [c["cell"] for c in measured["cells"]] == ["mix, batch 8"]
    assert len(measured["cells"][0]["attribute"]) == 2  # 16 texts in batches of 8
    assert measured["peak_rss_mb"] >= measured["rss_loaded_mb"] > 0


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gradlight.cli.main", "bench", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd)


def test_a_quick_bench_measures_every_method_on_the_same_tokens(
    tiny_model_dirs, exported, tmp_path
):
    out = tmp_path / "out"
    result = _bench(
        str(tiny_model_dirs["bert"]), "--artifact", str(exported("bert")), "--quick",
        "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "bench.json").read_text())
    assert report["environment"]["threads"] >= 1
    assert report["environment"]["torch"] and report["environment"]["onnxruntime"]
    (run,) = report["runs"]
    assert run["labels"] == 3
    assert {m: info["peak_rss_mb"] > 0 for m, info in run["methods"].items()} == {
        "reference": True, "eager-best": True, "engine": True,
    }  # fmt: skip
    names = [cell["name"] for cell in run["cells"]]
    assert names == ["mix, batch 1", "mix, batch 8", "length 16", "sentences, 5 per text"]
    for cell in run["cells"]:
        assert len(cell["methods"]) == 3
        for entry in cell["methods"].values():
            assert entry["texts_per_second"] > 0
            assert entry["latency"]["median_ms"] > 0
    mix = run["cells"][1]
    assert set(mix["speedup"]) == {
        "engine vs reference", "engine vs eager-best", "eager-best vs reference",
    }  # fmt: skip
    assert mix["methods"]["engine"]["attribution_over_forward"] > 0
    for method in ("engine", "eager-best"):
        agreement = mix["agreement_with_reference"][method]
        assert agreement["compared"] == 16 + 2  # 16 texts' scores, 2 batches' probabilities
        assert agreement["max_abs_diff_scores"] < 1e-4
        assert agreement["top3_agreement"] == 1.0
        assert agreement["max_abs_diff_probabilities"] < 1e-5
    sentences = run["cells"][3]["agreement_with_reference"]
    assert max(v["max_abs_diff_sentence_scores"] for v in sentences.values()) < 1e-5
    assert [level["clients"] for level in run["served"]] == [1, 8]
    assert all(level["requests"] == 32 for level in run["served"])
    statuses = {target["target"]: target["status"] for target in report["targets"]}
    assert len(statuses) == 5
    with (out / "bench.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * 3 + 2
    assert {row["method"] for row in rows} >= {"reference", "eager-best", "engine", "served"}
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "bench.png").stat().st_size > 20_000
    table = (out / "bench.md").read_text()
    assert "| target | threshold | status | measured |" in table
    assert "x vs reference" in table
    assert table in result.stdout


def test_bench_reheads_the_model_and_measures_the_label_subset_path(tiny_model_dirs, tmp_path):
    out = tmp_path / "out"
    args = ["--quick", "--labels", "4", "--subset-labels", "12", "--texts", "8", "--out", str(out)]
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
    from gradlight.bench import integrated
    from gradlight.bench.report import integrated_rows

    texts = ["No fever.", "The patient denies chest pain and shortness of breath.", "Cough."]
    options = integrated.IGOptions(
        steps=4, texts=3, batch=2, min_repeats=1, max_repeats=1, budget_s=0.0, threads=1
    )
    section = integrated.measure(
        tiny_model_dirs["bert"], exported("bert"), options, tmp_path, lambda _: None, texts
    )
    assert [row["method"] for row in section["rows"]] == ["captum", "eager-best", "gradlight"]
    assert section["labels"] == [0, 1, 2] and section["steps"] == 4
    assert section["lengths"]["min"] < section["lengths"]["max"]  # the eager ways pad
    # The same computation: raw scores within 1e-4 of each text's and label's largest |score|.
    assert set(section["agreement_max_relative_diff"]) == {
        "eager-best vs captum", "gradlight vs captum", "gradlight vs eager-best",
    }  # fmt: skip
    assert max(section["agreement_max_relative_diff"].values()) < 1e-4
    for row in section["rows"]:
        assert row["texts_per_s"] > 0 and row["batch_latency"]["calls"] == 2  # 2 batches
        assert row["machine"]["cpu"] and row["machine"]["threads"] == 1
        assert isinstance(row["machine"]["cpu_flags"], list)
        assert row["steps"] == 4 and row["batch"] == 2
    by_method = {row["method"]: row for row in section["rows"]}
    assert by_method["gradlight"]["padded_over_real_tokens"] == 1.0  # a text's rows together
    assert by_method["captum"]["padded_over_real_tokens"] > 1.0
    assert by_method["eager-best"]["attention"] in ("sdpa", "eager")
    assert section["target"]["status"] in ("met", "missed")
    assert section["speedup"]["gradlight vs faster eager"] == pytest.approx(
        by_method["gradlight"]["texts_per_s"]
        / max(by_method[m]["texts_per_s"] for m in ("captum", "eager-best")),
        rel=1e-2,
    )
    table = integrated.markdown(section)
    assert table.count("| captum |") == table.count("| gradlight |") == 1
    assert section["machine"]["cpu"] in table
    assert [row["method"] for row in integrated_rows({"integrated_gradients": section})] == [
        "ig-captum", "ig-eager-best", "ig-gradlight",
    ]  # fmt: skip
