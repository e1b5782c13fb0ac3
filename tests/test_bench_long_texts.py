"""The long-document bench (bench/long_texts.py), run small on the tiny BERT (a window of 64
tokens): what its report holds, and that eager PyTorch on the same windows gives the served
answer, window by window. Timings on the tiny model are meaningless and not checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradlight.bench.long_texts import clinical_note, main
from gradlight.bench.long_texts_report import agreement, paired_speedup
from gradlight.runtime.execution.tokenization import TextEncoder

CELLS = ("ixg-truncate", "ixg-windows", "ig-truncate", "ig-windows")


def test_the_note_is_the_same_everywhere_and_a_longer_one_starts_with_a_shorter(exported):
    encoder = TextEncoder(exported("bert") / "tokenizer" / "tokenizer.json")
    note = clinical_note(encoder, 400)
    assert note == clinical_note(encoder, 400)
    assert len(encoder.encode([note], 1 << 20)[0]) >= 400
    assert note.startswith(clinical_note(encoder, 100))
    assert note.startswith("Chief complaint:") and "History of present illness:" in note


def test_speedups_pair_rounds_and_identical_answers_agree_exactly():
    assert paired_speedup([2.0, 4.0, 9.0], [1.0, 1.0, 3.0]) == pytest.approx(3.0)
    raw = np.arange(12, dtype=np.float32).reshape(2, 6) - 5
    answer = {
        "raw": raw,
        "probabilities": np.array([0.2, 0.8]),
        "window_probabilities": np.array([[0.3, 0.7], [0.1, 0.9]]),
        "window_spans": np.array([[0, 10], [5, 20]]),
    }
    found = agreement(answer, answer, np.array([0, 0, 0, 1, 1, 1]))
    assert found["same_windows"] and found["max_relative_difference"] == 0.0
    assert found["top3_agreement"] == 1.0 and len(found["windows"]) == 2


def test_the_quick_run_reports_every_cell_and_eager_equals_served(
    tiny_model_dirs, exported, tmp_path
):
    out = tmp_path / "out"
    args = [str(tiny_model_dirs["bert"]), str(exported("bert")), "--quick", "--no-eager-bf16"]
    assert main([*args, "--out", str(out)]) == 0
    report = json.loads((out / "long-texts.json").read_text())
    note = report["note"]
    assert note["tokens"] >= 5 * 64 and note["windows"] > 4 and note["stride"] == 31
    assert report["machine"]["threads"] == 2 and report["machine"]["flags"]
    # the tiny artifact has no bf16 graphs: the server's default is fp32, measured once
    assert "served-default" in report["not_measured"]
    assert [cell["name"] for cell in report["cells"]] == list(CELLS)
    for cell in report["cells"]:
        whole = cell["long_texts"] == "windows"
        assert set(cell["sides"]) == ({"eager", "served-fp32"} if whole else {"served-fp32"})
        for side in cell["sides"].values():
            assert side["rounds"] == 2 and len(side["seconds"]) == 2
            assert side["p10_ms"] <= side["median_ms"] <= side["p90_ms"]
            assert side["peak_rss_mb"] > 0 and side["texts_per_s"] > 0
        if not whole:
            continue
        assert set(cell["speedup"]) == {"served-fp32 vs eager"}
        assert cell["sides"]["eager"]["attention"] in ("sdpa", "eager")
        served = cell["agreement"]["served-fp32"]
        assert served["equal"] and served["same_windows"]
        assert served["max_relative_difference"] < 1e-4 and served["top3_agreement"] == 1.0
        assert len(served["windows"]) == note["windows"]
    assert cell["sides"]["served-fp32"]["steps"] == 4
    assert all(report["checks"].values()) and len(report["checks"]) == 2
    assert set(report["windows_over_truncate"]["served-fp32"]) == {
        "input x gradient",
        "integrated gradients",
    }
    table = (out / "long-texts.md").read_text()
    assert "| input x gradient, windows | served-fp32 (fp32) |" in table
