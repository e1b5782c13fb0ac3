"""The soak (``python -m gradlight.bench.soak``), run for 24 seconds on the tiny BERT: a reload,
the served artifact damaged in place, a reload refused, the damage repaired and a reload
accepted, another reload; no valid call lost, every bad input refused with its own code, the
server serving throughout and exiting 0; the report and the plot written."""

from __future__ import annotations

import json
import subprocess
import sys

from gradlight.bench.soak import BAD_INPUTS, kinds, plan


def test_the_plan_reloads_regularly_and_around_the_damage_only_its_own_reloads():
    assert plan(24, 5, 10, 3) == [
        (5, "swap-reload"), (10, "damage"), (13, "reload-damaged"), (16, "repair-reload"),
        (20, "swap-reload"),
    ]  # fmt: skip
    thirty = plan(1800, 180, 720, 30)
    assert [at for at, action in thirty if action == "swap-reload"] == [
        180, 360, 540, 900, 1080, 1260, 1440, 1620,
    ]  # fmt: skip
    assert [action for _, action in plan(60, 20, None, 10)] == ["swap-reload"] * 2
    assert "integrated_gradients" not in kinds(["input_x_gradient"])


def test_a_short_soak_loses_nothing_through_reloads_and_damage(exported, tmp_path):
    out, png = tmp_path / "soak.json", tmp_path / "soak.png"
    command = [
        sys.executable, "-m", "gradlight.bench.soak", str(exported("bert")), "--minutes", "0.4",
        "--clients", "2", "--reload-every-s", "5", "--damage-at-s", "10", "--settle-s", "3",
        "--window-s", "5", "--sample-every-s", "1", "--out", str(out), "--plot", str(png),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert out.is_file(), result.stderr[-3000:]
    report = json.loads(out.read_text())
    server = report["server"]
    assert server["exit_code"] == 0, (report["failures"], "".join(server["log_tail"]))
    reloads = [(entry["action"], entry["outcome"]) for entry in report["reloads"]]
    assert reloads == [
        ("swap-reload", "reloaded"), ("reload-damaged", "refused"),
        ("repair-reload", "reloaded"), ("swap-reload", "reloaded"),
    ]  # fmt: skip
    assert "does not match its sha256" in report["reloads"][1]["error"]
    assert report["metrics"]["reloads"] == {"reloaded": 3, "refused": 1}
    assert report["damage"]["t_s"] >= 10 and len(report["damage"]["files"]) == 2
    total = report["totals"]
    assert total["lost"] == 0, report["error_samples"]
    assert total["valid_answered"] == total["valid_sent"] > 0
    assert total["bad_refused_correctly"] == total["bad_sent"] > 0
    assert set(total["latency_by_kind"]) == set(report["kinds"])  # every kind was answered
    assert set(report["kinds"]) >= {"integrated_gradients", "gradient_shap", *BAD_INPUTS}
    samples = report["samples"]
    assert len(samples) >= 15 and all(s["rss_mb"] > 0 for s in samples)
    assert {(s["healthz"], s["grpc_health"]) for s in samples} == {("SERVING", "SERVING")}
    assert total["max_healthz_ms"] > 0 and total["max_grpc_health_ms"] > 0
    assert len(report["windows"]) >= 4
    assert all(
        w["kinds"]["valid"]["p99_ms"] >= w["kinds"]["valid"]["p50_ms"] > 0
        for w in report["windows"]
    )
    assert report["machine"]["cpu"] and report["machine"]["cpu_flags"]
    assert report["machine"]["versions"]["onnxruntime"]
    assert png.read_bytes().startswith(b"\x89PNG")
    assert report["failures"] == [] and result.returncode == 0, report["failures"]
