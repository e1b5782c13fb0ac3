"""The soak's report (``gradlight.bench.soak``): its calls summed up per time window and in
totals, what failed, the machine it ran on, and its plot: the server's RSS, p50 and p99 latency
per kind of call, and the health checks' latency over time, with a vertical line at each
reload (green accepted, red refused, grey neither) and at the damage (black, dashed).

    python -m gradlight.bench.soak_plot soak.json soak.png    # plot a report again
"""

from __future__ import annotations

import contextlib
import json
import platform
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.bench.machine import cores_available, cpu_name
from gradlight.bench.stats import latency

ANSWERED = ("ok", "refused")  # a valid call answered right, a bad one refused right
OUTCOME_COLOURS = {"reloaded": "tab:green", "refused": "tab:red"}
Event = tuple[float, str, float, str]  # start (s into the run), kind, seconds, outcome


def _percentiles(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None}
    ms = np.asarray(seconds) * 1000
    return {
        "p50_ms": round(float(np.median(ms)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def windows(events: Sequence[Event], window_s: float, bad: Sequence[str]) -> list[dict]:
    """Per window of ``window_s`` (by when a call started), per kind and for the kinds not in
    ``bad`` together (``valid``): calls, ``failed`` (lost, or for a bad input answered
    wrongly), and p50 / p99 latency of the others."""
    count = int(max((event[0] for event in events), default=0) // window_s) + 1
    rows: list[dict] = [{"t_s": i * window_s, "kinds": {}} for i in range(count)]
    grouped: dict[tuple[int, str], list[tuple[float, str]]] = {}
    for start, kind, seconds, outcome in events:
        index = int(start // window_s)
        grouped.setdefault((index, kind), []).append((seconds, outcome))
        if kind not in bad:
            grouped.setdefault((index, "valid"), []).append((seconds, outcome))
    for (index, kind), calls in sorted(grouped.items()):
        done = [seconds for seconds, outcome in calls if outcome in ANSWERED]
        failed = len(calls) - len(done)
        rows[index]["kinds"][kind] = {"calls": len(calls), "failed": failed, **_percentiles(done)}
    return rows


def totals(
    events: Sequence[Event], samples: Sequence[dict], reloads: Sequence[dict], bad: Sequence[str]
) -> dict[str, Any]:
    """Calls sent, valid, lost; bad inputs refused right and answered wrongly; reloads by
    outcome; the slowest health checks; the RSS; latency per kind over the whole run."""
    outcomes = Counter(event[3] for event in events)
    valid = sum(event[1] not in bad for event in events)
    reloaded = Counter(entry["outcome"] for entry in reloads)
    rss = [sample["rss_mb"] for sample in samples if sample["rss_mb"] is not None]
    by_kind: dict[str, list[float]] = {}
    for _, kind, seconds, outcome in events:
        if outcome in ANSWERED:
            by_kind.setdefault(kind, []).append(seconds)
    return {
        "requests_sent": len(events),
        "valid_sent": valid,
        "valid_answered": outcomes["ok"],
        "lost": outcomes["lost"],
        "bad_sent": len(events) - valid,
        "bad_refused_correctly": outcomes["refused"],
        "bad_answered_wrongly": outcomes["wrong"],
        "reloads_accepted": reloaded["reloaded"],
        "reloads_refused": reloaded["refused"],
        "reloads_other": sum(reloaded.values()) - reloaded["reloaded"] - reloaded["refused"],
        "max_healthz_ms": max((s["healthz_ms"] for s in samples), default=None),
        "max_grpc_health_ms": max((s["grpc_health_ms"] for s in samples), default=None),
        "rss_mb": {"first": rss[0], "last": rss[-1], "max": max(rss)} if rss else {},
        "latency_by_kind": {kind: latency(values) for kind, values in by_kind.items()},
    }


def machine(threads: int, clients: int) -> dict[str, Any]:
    """The CPU (model and every flag /proc/cpuinfo lists), the threads and the versions."""
    flags: list[str] = []
    with (
        contextlib.suppress(OSError, StopIteration),
        open("/proc/cpuinfo", encoding="utf-8") as cpuinfo,
    ):
        flags = next(line for line in cpuinfo if line.startswith("flags")).split(":")[1].split()
    packages = ("gradlight", "grpcio", "onnxruntime", "numpy", "tokenizers", "aiohttp")
    return {
        "cpu": cpu_name(),
        "cpu_flags": flags,
        "cores_available": cores_available(),
        "threads": {
            "onnxruntime_intra_op": threads or "one per core",
            "onnxruntime_inter_op": 1,
            "client_tasks": clients,
        },
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": {name: metadata.version(name) for name in packages},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def judged(
    found: Sequence[str], total: dict[str, Any], samples: Sequence[dict], exit_code: int
) -> list[str]:
    """Every failure: those ``found`` during the run, the totals', the health checks' and the
    server's exit code."""
    failures = list(found)
    if total["lost"]:
        failures.append(f"{total['lost']} of {total['valid_sent']} valid calls lost")
    if total["bad_answered_wrongly"]:
        failures.append(f"{total['bad_answered_wrongly']} bad inputs answered wrongly")
    unhealthy = [s["t_s"] for s in samples if {s["healthz"], s["grpc_health"]} != {"SERVING"}]
    if unhealthy and not any("died" in failure for failure in failures):
        failures.append(f"health not SERVING at {unhealthy[:10]} s")
    if exit_code:
        name = f" ({signal.Signals(-exit_code).name})" if exit_code < 0 else ""
        failures.append(f"the server exited with {exit_code}{name}")
    return failures


def _marks(axis: Any, report: dict[str, Any]) -> None:
    """The reloads and the damage as vertical lines."""
    for entry in report["reloads"]:
        colour = OUTCOME_COLOURS.get(entry["outcome"], "grey")
        axis.axvline(entry["t_s"] / 60, color=colour, alpha=0.6, linewidth=1)
    if report.get("damage"):
        axis.axvline(report["damage"]["t_s"] / 60, color="black", linestyle="--", linewidth=1.2)


def _latency_panel(axis: Any, report: dict[str, Any], key: str) -> None:
    half = report["settings"]["window_s"] / 2
    kinds = [kind for kind in report["kinds"] if not kind.startswith("bad_")] + ["valid"]
    for kind in kinds:
        points = [
            ((row["t_s"] + half) / 60, row["kinds"][kind][key])
            for row in report["windows"]
            if row["kinds"].get(kind, {}).get(key) is not None
        ]
        if points:
            x, y = zip(*points, strict=True)
            style = {"color": "black", "linewidth": 2} if kind == "valid" else {"linewidth": 1}
            axis.plot(x, y, marker=".", label=kind, **style)
    name = key.split("_")[0]
    axis.set(ylabel=f"{name} latency (ms)", yscale="log")
    axis.set_title(
        f"{name} latency per kind of call, per window (valid: all valid calls)", fontsize=9
    )
    axis.legend(fontsize=6, ncol=4)


def plot(report: dict[str, Any], path: Path) -> None:
    """The four panels, one above the other, against minutes into the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(4, 1, figsize=(10, 12), sharex=True)
    samples = report["samples"]
    minutes = [sample["t_s"] / 60 for sample in samples]
    axes[0].plot(minutes, [sample["rss_mb"] for sample in samples], marker=".")
    axes[0].set(ylabel="server RSS (MB)")
    axes[0].set_title("Server resident memory (VmRSS)", fontsize=9)
    _latency_panel(axes[1], report, "p50_ms")
    _latency_panel(axes[2], report, "p99_ms")
    for key, label in (("healthz_ms", "GET /healthz"), ("grpc_health_ms", "gRPC health")):
        axes[3].plot(minutes, [sample[key] for sample in samples], marker=".", label=label)
    axes[3].set(ylabel="health latency (ms)", xlabel="minutes into the run", yscale="log")
    axes[3].set_title("Health checks' latency", fontsize=9)
    axes[3].legend(fontsize=7)
    for axis in axes:
        _marks(axis, report)
        axis.grid(alpha=0.3)
    for axis in axes[1:]:  # log scales, ticked 1, 2, 5, 10, ...
        axis.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    total = report["totals"]
    figure.suptitle(
        f"gradlight soak: {report['artifact']}, {total['requests_sent']} calls, "
        f"{total['lost']} lost; reloads: {total['reloads_accepted']} accepted, "
        f"{total['reloads_refused']} refused (green / red lines; damage: dashed)",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> None:
    report_path, out = (Path(arg) for arg in (argv or sys.argv[1:]))
    plot(json.loads(report_path.read_text(encoding="utf-8")), out)


if __name__ == "__main__":
    main()
