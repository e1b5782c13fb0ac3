"""The fixed-length batch sweep (bench/throughput.py) that bench/gpu/run.sh runs on a GPU: here
on the CPU with a tiny model, every method timed and the physical-limit arithmetic checked."""

from __future__ import annotations

import json

import pytest

from gradlight.bench.throughput import forward_flops, main, markdown


def test_forward_flops_of_bert_base_at_128_tokens_is_the_known_22_4_gflop():
    bert_base = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12}
    assert forward_flops(bert_base, 128) / 1e9 == pytest.approx(22.4, abs=0.1)


def test_the_sweep_times_every_method_and_states_the_fraction_of_the_peak(
    tiny_model_dirs, tmp_path, capsys
):
    out = tmp_path / "throughput.json"
    args = [str(tiny_model_dirs["bert"]), "--provider", "cpu", "--labels", "2"]
    args += ["--batches", "1", "4", "--length", "32", "--repeats", "3"]
    args += [
        "--peak-tflops",
        "0.002",
        "0.001",
        "--work-dir",
        str(tmp_path / "work"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    report = json.loads(out.read_text())
    methods = {"reference", "eager-best", "ort-fp32", "ort-fp16"}
    assert {(row["batch"], row["method"]) for row in report["rows"]} == {
        (batch, method) for batch in (1, 4) for method in methods
    }
    config = json.loads((tiny_model_dirs["bert"] / "config.json").read_text())
    per_text = 3 * forward_flops(config, 32)  # a forward and 2 label backwards
    for row in report["rows"]:
        assert row["calls"] == 3 and row["median_ms"] > 0
        assert row["texts_per_s"] == pytest.approx(row["batch"] / row["median_ms"] * 1000, rel=0.01)
        peak = 2e9 if row["method"] == "ort-fp16" else 1e9  # tiny peaks: visible fractions
        assert row["fraction_of_peak"] == pytest.approx(
            row["texts_per_s"] * per_text / peak, rel=0.02, abs=1e-4
        )
        assert row["fraction_of_peak"] > 0
    assert [(a["labels"], a["batch"]) for a in report["fp16_agreement"]] == [(2, 1), (2, 4)]
    for agreement in report["fp16_agreement"]:  # fp16 against fp32 on the timed batches
        assert agreement["normalized_scores_max_abs_diff"] <= 0.05
        assert agreement["top3_token_agreement"] >= 0.9
    assert markdown(report) in capsys.readouterr().out
