"""A soak of ``gradlight serve``: a mixed load for a long time, with reloads and one artifact
damaged in place, every answer checked; memory, latency and health sampled over time.

    python -m gradlight.bench.soak ARTIFACT [--minutes 30] [--clients 4] [--reload-every-s 180]
        [--damage-at-s S | --no-damage] [--settle-s 30] [--window-s 30] [--sample-every-s 5]
        [--threads 0] [--out soak.json] [--plot soak.png]

ARTIFACT is copied twice into a temporary directory (every file with a new modification time):
one copy is served by ``gradlight serve`` in its own process (gRPC and HTTP on free loopback
ports, CPU, model ``soak``), the other is the spare. ``clients`` asyncio clients, each on its
own channel, send calls back to back, each once (no retries), cycling through ``kinds``:
Predict, Attribute with token attributions, with sentence attributions, an AttributeStream
(made and checked by ``gradlight.bench.load``), every path method the model serves (integrated
gradients at 8 Gauss-Legendre steps and at a 5% completeness tolerance on Fejer's rule,
GradientSHAP with a seed), label subsets, faithfulness, and ``BAD_INPUTS`` (an empty text, an
unknown label, ``max_length`` -1, an unknown model), which must be refused with their status
code naming their field. A valid call that fails or is answered wrongly is lost; a bad one
answered otherwise is wrong.

Every ``reload-every-s`` the spare and the served copy swap places (directories renamed) and
the server gets SIGHUP: the reload must be accepted. At ``damage-at-s`` (default: 40% of the
run) the served copy is damaged in place (``weights.bin`` truncated to half, ``forward.onnx``
overwritten with other bytes of its size): the server must keep serving; ``settle-s`` later a
SIGHUP must be refused; then the damaged files are copied back from ARTIFACT, and ``settle-s``
later a SIGHUP must be accepted. A reload's outcome is read from the server's log
(``reload: model soak OUTCOME``); ``gradlight_reloads_total`` is read from ``/metrics`` at the end.

Every ``sample-every-s``: the server's resident memory (VmRSS) and the latency of ``GET
/healthz`` and of the gRPC health check. The report (JSON): the machine, versions, settings,
the samples, per ``window-s`` window and call kind the calls, losses and p50 / p99 latency, the
reloads, the damage and the totals. Exit 1 when a valid call was lost, a bad one answered
wrongly, a health check did not answer SERVING, a reload's outcome was not the expected one,
or the server died (the reasons: ``failures``). The plot: ``gradlight.bench.soak_plot``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gradlight.bench.machine import rss_bytes
from gradlight.bench.served import ServerProcess
from gradlight.bench.soak_calls import BAD_INPUTS, MODEL, Soak, _client, kinds
from gradlight.bench.soak_plot import judged, machine, plot, totals, windows
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc

EXPECTED = {"swap-reload": "reloaded", "reload-damaged": "refused", "repair-reload": "reloaded"}
RELOAD_LINE = re.compile(r"reload: model \S+ (\w+) \(revision (\w+)\)")
REFUSAL_LINE = re.compile(r"reload of model .* refused.*")
RELOAD_TIMEOUT_S = 300.0


class Workspace:
    """The served copy of an artifact and its spare, in ``root``: every file copied with a new
    modification time, so that swapping the two is a change a reload sees."""

    DAMAGED = ("weights.bin", "forward.onnx")

    def __init__(self, source: Path, root: Path) -> None:
        self.source, self.served, self.spare = source, root / "model", root / "spare"
        for copy in (self.served, self.spare):
            shutil.copytree(source, copy, copy_function=shutil.copyfile)

    def swap(self) -> None:
        """The spare renamed into the served place, the served copy into the spare's."""
        parked = self.served.with_name("parked")
        os.replace(self.served, parked)
        os.replace(self.spare, self.served)
        os.replace(parked, self.spare)

    def damage(self) -> list[str]:
        """The served weights truncated to half, the forward graph overwritten in place."""
        weights, graph = (self.served / name for name in self.DAMAGED)
        size = weights.stat().st_size
        with weights.open("r+b") as handle:
            handle.truncate(size // 2)
        flipped = (np.fromfile(graph, dtype=np.uint8) ^ 0xFF).tobytes()
        with graph.open("r+b") as handle:  # the same size, other bytes, written in place
            handle.write(flipped)
        return [
            f"weights.bin truncated {size} -> {size // 2} bytes",
            f"forward.onnx: {len(flipped)} bytes inverted in place",
        ]

    def repair(self) -> None:
        """The damaged files copied back from the source, in place (new modification times)."""
        for name in self.DAMAGED:
            shutil.copyfile(self.source / name, self.served / name)


def plan(
    duration_s: float, reload_every_s: float, damage_at_s: float | None, settle_s: float
) -> list[tuple[float, str]]:
    """The reloads and the damage, (seconds into the run, action), in time order: a swap and
    reload every ``reload_every_s`` except around the damage; the damage, a reload of the
    damaged copy ``settle_s`` later, its repair and a reload another ``settle_s`` later."""
    actions: list[tuple[float, str]] = []
    busy = (float("inf"), float("inf"))
    if damage_at_s is not None:
        actions = [
            (damage_at_s, "damage"),
            (damage_at_s + settle_s, "reload-damaged"),
            (damage_at_s + 2 * settle_s, "repair-reload"),
        ]
        busy = (damage_at_s - settle_s, damage_at_s + 3 * settle_s)
    at = reload_every_s
    while at <= duration_s - settle_s:
        if not busy[0] < at < busy[1]:
            actions.append((at, "swap-reload"))
        at += reload_every_s
    return sorted(actions)


async def _reload(server: ServerProcess) -> dict[str, Any]:
    """SIGHUP, then the outcome the server logs (or why there is none)."""
    seen = len(server.log)
    started = time.perf_counter()
    server.process.send_signal(signal.SIGHUP)
    while time.perf_counter() - started < RELOAD_TIMEOUT_S and server.process.poll() is None:
        lines = server.log[seen:]
        for line in lines:
            if match := RELOAD_LINE.search(line):
                refusal = next((m.group(0) for x in lines if (m := REFUSAL_LINE.search(x))), "")
                return {
                    "outcome": match.group(1),
                    "revision": match.group(2),
                    "seconds": round(time.perf_counter() - started, 2),
                    "error": refusal[:300],
                }
        await asyncio.sleep(0.1)
    outcome = "no outcome logged" if server.process.poll() is None else "server died"
    return {"outcome": outcome, "seconds": round(time.perf_counter() - started, 2)}


async def _controller(
    server: ServerProcess, workspace: Workspace, actions: list[tuple[float, str]], soak: Soak
) -> None:
    for at, action in actions:
        if await soak.wait_until(at):
            return
        now = round(soak.now(), 2)
        if action == "damage":
            soak.damage = {"t_s": now, "files": await asyncio.to_thread(workspace.damage)}
            print(json.dumps({"damage": soak.damage}), flush=True)
            continue
        if action != "reload-damaged":  # that one reloads the damaged copy as it is
            await asyncio.to_thread(workspace.swap if action == "swap-reload" else workspace.repair)
        entry = {
            "t_s": now,
            "action": action,
            "expected": EXPECTED[action],
            **await _reload(server),
        }
        soak.reloads.append(entry)
        print(json.dumps({"reload": entry}), flush=True)
        if entry["outcome"] != entry["expected"]:
            soak.failures.append(
                f"{action} at {now} s: {entry['outcome']}, expected {entry['expected']}"
            )


async def _sample(
    server: ServerProcess, http: aiohttp.ClientSession, health: Any, t: float
) -> dict:
    """The server's memory now, and how long each health check took to answer (ms)."""
    sample: dict[str, Any] = {"t_s": round(t, 2), "rss_mb": None}
    with contextlib.suppress(OSError, RuntimeError):  # gone, or a zombie without VmRSS
        sample["rss_mb"] = round(rss_bytes(server.pid) / 2**20, 1)
    started = time.perf_counter()
    try:
        async with http.get(server.http_url + "healthz", timeout=aiohttp.ClientTimeout(10)) as got:
            sample["healthz"] = "SERVING" if got.status == 200 else f"HTTP {got.status}"
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        sample["healthz"] = type(exc).__name__
    sample["healthz_ms"] = round((time.perf_counter() - started) * 1000, 2)
    started = time.perf_counter()
    try:
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        sample["grpc_health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    except grpc.aio.AioRpcError as exc:
        sample["grpc_health"] = exc.code().name
    sample["grpc_health_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return sample


async def _sampler(server: ServerProcess, soak: Soak, every_s: float, window_s: float) -> None:
    """Samples until the run stops, and once more then; stops the run when the server dies.
    Prints a line a window."""
    printed = 0.0
    async with aiohttp.ClientSession() as http, grpc.aio.insecure_channel(server.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        while True:
            stopping = soak.stop.is_set()
            sample = await _sample(server, http, health, soak.now())
            soak.samples.append(sample)
            if soak.server_gone():
                soak.failures.append(f"the server died (found at {sample['t_s']} s)")
                soak.stop.set()
            if sample["t_s"] - printed >= window_s or soak.stop.is_set():
                printed = sample["t_s"]
                outcomes = [event[3] for event in soak.events]
                done = {"sent": len(outcomes), "lost": outcomes.count("lost")}
                print(json.dumps({**sample, **done}), flush=True)
            if stopping or soak.server_gone():
                return
            await soak.wait_until(sample["t_s"] + every_s)


async def _scrape(url: str) -> dict[str, dict[str, float]]:
    """``gradlight_reloads_total`` by outcome and ``gradlight_requests_total`` by method and
    code, from the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(url + "metrics") as answer:
        text = await answer.text()
    found: dict[str, dict[str, float]] = {"reloads": {}, "requests": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gradlight_reloads_total":
                found["reloads"][sample.labels["outcome"]] = sample.value
            elif sample.name == "gradlight_requests_total":
                key = f"{sample.labels['method']} {sample.labels['code']}"
                found["requests"][key] = found["requests"].get(key, 0) + sample.value
    return found


async def _soak(server: ServerProcess, workspace: Workspace, args: Any, duration_s: float) -> dict:
    """The run itself, against the started ``server``: the record and the server's metrics."""
    async with grpc.aio.insecure_channel(server.address) as channel:
        listed = await pb_grpc.AttributorStub(channel).ListModels(pb.ListModelsRequest())
    (model,) = listed.models
    mix, labels, soak = kinds(model.methods), list(model.labels), Soak(process=server.process)
    actions = plan(duration_s, args.reload_every_s, args.damage_at_s, args.settle_s)
    clients = [_client(server.address, labels, mix, i, soak) for i in range(args.clients)]
    tasks = [asyncio.ensure_future(c) for c in clients]
    tasks.append(asyncio.ensure_future(_sampler(server, soak, args.sample_every_s, args.window_s)))
    tasks.append(asyncio.ensure_future(_controller(server, workspace, actions, soak)))
    await soak.wait_until(duration_s)
    soak.stop.set()
    await asyncio.gather(*tasks)
    metrics = await _scrape(server.http_url) if server.process.poll() is None else {}
    served = {"labels": labels, "methods": list(model.methods), "revision": model.revision}
    return {"model": served, "kinds": list(mix), "plan": actions, "soak": soak, "metrics": metrics}


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    duration_s = args.minutes * 60
    flags = [*f"--name {MODEL} --port 0 --http-port 0 --provider cpu".split(),
             "--intra-op-threads", str(args.threads)]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gradlight-soak-") as root:
        workspace = Workspace(args.artifact, Path(root))
        server = ServerProcess([str(workspace.served), *flags])
        try:
            run = asyncio.run(_soak(server, workspace, args, duration_s))
        finally:
            exit_code = server.terminate()
    soak: Soak = run.pop("soak")
    total = totals(soak.events, soak.samples, soak.reloads, tuple(BAD_INPUTS))
    report = {
        "artifact": str(args.artifact),
        "machine": machine(args.threads, args.clients),
        "settings": {
            **vars(args),
            "artifact": str(args.artifact),
            "out": str(args.out),
            "plot": str(args.plot),
            "seconds": round(soak.now(), 1),
        },
        **run,
        "failures": judged(soak.failures, total, soak.samples, exit_code),
        "totals": total,
        "reloads": soak.reloads,
        "damage": soak.damage,
        "samples": soak.samples,
        "windows": windows(soak.events, args.window_s, tuple(BAD_INPUTS)),
        "error_samples": soak.errors,
        "server": {"exit_code": exit_code, "log_tail": server.log[-30:]},
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    try:
        plot(report, args.plot)
    except ImportError as exc:  # matplotlib comes with the export extra
        print(f"no plot ({exc}): pip install matplotlib, then python -m "
              f"gradlight.bench.soak_plot {args.out} {args.plot}", file=sys.stderr)  # fmt: skip
    brief = {k: v for k, v in total.items() if k != "latency_by_kind"}
    print(json.dumps({"totals": brief, "failures": report["failures"]}), flush=True)
    return 1 if report["failures"] else 0


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gradlight.bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--reload-every-s", type=float, default=180.0)
    parser.add_argument("--damage-at-s", type=float, default=None, help="default: 40%% of the run")
    parser.add_argument("--no-damage", action="store_true", help="leave the artifact whole")
    parser.add_argument(
        "--settle-s",
        type=float,
        default=30.0,
        help="damage to its reload, and repair to its reload (default 30)",
    )
    parser.add_argument("--window-s", type=float, default=30.0, help="latency windows (default 30)")
    parser.add_argument("--sample-every-s", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("soak.json"))
    parser.add_argument("--plot", type=Path, default=Path("soak.png"))
    args = parser.parse_args(argv)
    duration_s = args.minutes * 60
    if args.no_damage:
        args.damage_at_s = None
    elif args.damage_at_s is None:
        args.damage_at_s = round(0.4 * duration_s, 1)
    if args.damage_at_s is not None and args.damage_at_s + 2 * args.settle_s >= duration_s:
        parser.error("--damage-at-s plus twice --settle-s must fall within --minutes")
    return args


if __name__ == "__main__":
    sys.exit(main())
