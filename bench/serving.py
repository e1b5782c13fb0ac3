"""Serving latency and throughput: gRPC end to end next to the in-process engine, same run.

    python -m gradlight.bench.serving ARTIFACT_DIR [--seconds 20] [--out docs/serving.json]

Measures, on one machine with the same ONNX Runtime thread count:
1. ``engine``: the in-process ONNX Runtime engine on pre-tokenized input (the attribution graph
   alone): one text, and its best throughput over batch sizes 1-32.
2. ``served``: ``gradlight serve`` as a separate process, Attribute calls over a real loopback
   channel (tokenization, batching, serialization included): one text at a time (latency), and
   32 concurrent clients each sending one-text requests (throughput).
Texts are clinical-style sentences of about 30 tokens. Reports medians and p90/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort

from gradlight.runtime.engine import Engine
from gradlight.runtime.settings import EngineSettings
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc

FINDINGS = ["chest pain", "shortness of breath", "fever", "cough", "nausea", "pneumonia"]
TEMPLATES = [
    "The patient denied any {f} during today's visit and reported feeling well overall, "
    "sleeping and eating normally.",
    "She reports worsening {f} over the last three days despite rest, fluids and "
    "over-the-counter medication at home.",
    "Cannot rule out {f} at this time; we will repeat the physical examination and the "
    "laboratory tests tomorrow morning.",
    "No evidence of {f} was found on careful examination, and her vital signs remained "
    "stable throughout the stay.",
]


def texts(count: int) -> list[str]:
    return [
        TEMPLATES[i % len(TEMPLATES)].format(f=FINDINGS[i % len(FINDINGS)]) + f" (note {i})"
        for i in range(count)
    ]


def stats(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000
    return {
        "median_ms": round(float(np.median(values)), 2),
        "p90_ms": round(float(np.percentile(values, 90)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "n": len(values),
    }


def measure_engine(artifact: Path, threads: int, seconds: float) -> dict[str, Any]:
    engine = Engine(artifact, EngineSettings(provider="cpu", intra_op_threads=threads))
    engine.warm_up()
    sample = texts(64)
    encoded = engine.encode(sample, engine.max_length)
    run = engine.attribute_all if engine.has_all_labels_graph else None
    assert run is not None, "the artifact has no all-labels graph (L too large for this bench)"
    single = []
    deadline = time.perf_counter() + seconds / 3
    index = 0
    while time.perf_counter() < deadline or len(single) < 20:
        batch = engine.batch([encoded[index % len(encoded)]])
        started = time.perf_counter()
        run(batch)
        single.append(time.perf_counter() - started)
        index += 1
    throughput = {}
    for size in (1, 8, 16, 32):
        batch = engine.batch(encoded[:size])
        run(batch)
        started = time.perf_counter()
        calls = 0
        while time.perf_counter() - started < seconds / 6 or calls < 3:
            run(batch)
            calls += 1
        throughput[size] = round(size * calls / (time.perf_counter() - started), 1)
    return {
        "tokens_per_text": round(float(np.mean([len(e) for e in encoded])), 1),
        "labels": len(engine.labels),
        "single_text": stats(single),
        "texts_per_second_by_batch": throughput,
        "best_texts_per_second": max(throughput.values()),
    }


class ServerProcess:
    def __init__(self, artifact: Path, threads: int) -> None:
        command = [sys.executable, "-m", "gradlight.cli.main", "serve", str(artifact)]
        command += ["--port", "0", "--no-http", "--provider", "cpu"]
        command += ["--intra-op-threads", str(threads)]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.address = ""
        for line in self.process.stderr:  # type: ignore[union-attr]
            if match := re.search(r"gradlight serving on (\S+)", line):
                self.address = match.group(1)
                break
        if not self.address:
            raise RuntimeError("gradlight serve did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


async def _served(address: str, clients: int, seconds: float) -> dict[str, Any]:
    sample = texts(256)
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AttributorStub(channel)
        for text in sample[:8]:  # warm up
            await stub.Attribute(pb.AttributeRequest(texts=[text], token_attributions=True))
        stop_at = time.perf_counter() + seconds

        async def client(index: int) -> None:
            count = index
            while time.perf_counter() < stop_at:
                request = pb.AttributeRequest(
                    texts=[sample[count % len(sample)]], token_attributions=True
                )
                started = time.perf_counter()
                response = await stub.Attribute(request)
                latencies.append(time.perf_counter() - started)
                assert response.results[0].text == request.texts[0]
                count += clients

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "latency": stats(latencies),
        "texts_per_second": round(len(latencies) / elapsed, 1),
    }


def environment(threads: int) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores_available": len(os.sched_getaffinity(0)),
        "ort_intra_op_threads": threads,
        "onnxruntime": ort.__version__,
        "grpcio": grpc.__version__,
        "python": platform.python_version(),
        "execution_provider": "CPUExecutionProvider",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {"environment": environment(args.threads)}
    manifest = json.loads((args.artifact / "manifest.json").read_text(encoding="utf-8"))
    report["model"] = {"architecture": manifest["architecture"], "labels": manifest["labels"]}
    report["engine"] = measure_engine(args.artifact, args.threads, args.seconds)
    server = ServerProcess(args.artifact, args.threads)
    try:
        report["served_1_client"] = asyncio.run(_served(server.address, 1, args.seconds))
        report["served_32_clients"] = asyncio.run(_served(server.address, 32, args.seconds))
    finally:
        server.stop()
    best = report["engine"]["best_texts_per_second"]
    report["served_32_vs_engine_best"] = round(
        report["served_32_clients"]["texts_per_second"] / best, 3
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
