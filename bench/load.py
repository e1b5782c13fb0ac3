"""A bounded load on a running gradlight server, every answer checked against its request.

``run_load`` drives ``clients`` concurrent clients, each on its own channel (connection), each
sending ``requests_per_client`` requests that cycle through the API's kinds of work: Predict,
Attribute with token attributions, Attribute with sentence attributions, and an
AttributeStream of several requests. Every text is unique to its client, request and round, so
an answer routed to the wrong request, lost, duplicated or out of order is caught: each answer
must echo its request's texts in order, hold one score per label for every token and
sentence, offsets inside its text, and exactly the sentences the splitter finds (of a truncated
text, the first of them: those the model reads a part of). Nothing here
imports torch.

``python -m gradlight.bench.load ARTIFACT`` starts ``gradlight serve`` itself, runs rounds of
load, and reports requests/s, latency percentiles and the server's memory after each round;
``--overload`` also runs a burst against a small queue (see ``docs/reliability.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import onnxruntime
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gradlight.bench.machine import cores_available, cpu_name, rss_bytes
from gradlight.bench.stats import latency
from gradlight.runtime.explanation.sentences import split_sentences
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc

KINDS = ("predict", "tokens", "sentences", "stream")
STREAM_REQUESTS = 3
SENTENCES = (
    "The patient denies chest pain.",
    "No evidence of pneumonia on the chest film.",
    "She reports a mild cough since Monday.",
    "Dr. Smith started aspirin 81 mg daily, e.g. with meals.",
    "Family history is negative for diabetes.",
    "He was seen at 9 a.m. and discharged home.",
)


@dataclass(frozen=True)
class LoadSpec:
    clients: int = 64
    requests_per_client: int = 8  # calls per client; a stream counts as one call
    model: str = ""
    max_length: int = 0
    timeout_s: float = 120.0


@dataclass
class LoadReport:
    calls: int = 0  # RPCs made (a stream is one)
    answered: int = 0  # RPCs that returned every response they owed, all checked
    texts: int = 0  # texts answered
    errors: list[str] = field(default_factory=list)  # "kind: CODE: details", one per failed RPC
    codes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)

    @property
    def requests_per_second(self) -> float:
        return round(self.calls / self.seconds, 1) if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        every = [value for values in self.latencies.values() for value in values]
        return {
            "calls": self.calls,
            "answered": self.answered,
            "texts": self.texts,
            "errors": len(self.errors),
            "codes": dict(self.codes),
            "seconds": round(self.seconds, 2),
            "requests_per_second": self.requests_per_second,
            "latency": latency(every) if every else {},
            "latency_by_kind": {kind: latency(v) for kind, v in self.latencies.items() if v},
        }


class Mismatch(AssertionError):
    """An answer that is not its request's."""


def _texts(round_index: int, client: int, call: int, count: int, sentences: int) -> list[str]:
    texts = []
    for k in range(count):
        start = (client + call + k) % len(SENTENCES)
        body = " ".join(SENTENCES[(start + i) % len(SENTENCES)] for i in range(sentences))
        texts.append(f"Note {round_index}-{client}-{call}-{k}: {body}")
    return texts


def check_result(result: pb.TextResult, text: str, labels: Sequence[str], kind: str) -> None:
    """Raise ``Mismatch`` unless ``result`` answers ``text`` as ``kind`` asked."""
    if result.text != text:
        raise Mismatch(f"{kind}: answer for {result.text[:40]!r} to a request for {text[:40]!r}")
    if result.predicted_label not in labels or len(result.probabilities) != len(labels):
        raise Mismatch(f"{kind}: prediction does not follow the model's labels")
    if kind in ("tokens", "stream"):
        if not result.tokens:
            raise Mismatch(f"{kind}: no token attributions")
        last = 0
        for token in result.tokens:
            if len(token.scores) != len(labels) or any(abs(s) > 1 + 1e-6 for s in token.scores):
                raise Mismatch(f"{kind}: token scores are not one in [-1, 1] per label")
            if not token.special:
                if not (last <= token.start < token.end <= len(text)):
                    raise Mismatch(f"{kind}: token offsets [{token.start}, {token.end}) off")
                last = token.start
    if kind == "sentences":
        expected = [(span.start, span.end) for span in split_sentences(text)]
        listed = [(s.start, s.end) for s in result.sentences]
        if result.truncated:  # the sentences the model reads a part of: the first ones
            expected = expected[: max(1, len(listed))]
        if listed != expected:
            raise Mismatch(f"{kind}: sentences are not the text's")
        if any(len(s.scores) != len(labels) for s in result.sentences):
            raise Mismatch(f"{kind}: sentence scores are not one per label")


async def _client(
    stub: pb_grpc.AttributorStub,
    spec: LoadSpec,
    labels: Sequence[str],
    round_index: int,
    client: int,
    report: LoadReport,
    metadata: tuple[tuple[str, str], ...],
) -> None:
    for call in range(spec.requests_per_client):
        kind = KINDS[(client + call) % len(KINDS)]
        started = time.perf_counter()
        report.calls += 1
        try:
            texts = await _one_call(stub, spec, labels, kind, round_index, client, call, metadata)
        except grpc.aio.AioRpcError as exc:
            report.codes[exc.code().name] += 1
            report.errors.append(f"{kind}: {exc.code().name}: {exc.details()}")
            continue
        except Mismatch as exc:
            report.codes["MISMATCH"] += 1
            report.errors.append(str(exc))
            continue
        report.codes["OK"] += 1
        report.answered += 1
        report.texts += texts
        report.latencies.setdefault(kind, []).append(time.perf_counter() - started)


async def _one_call(
    stub: pb_grpc.AttributorStub,
    spec: LoadSpec,
    labels: Sequence[str],
    kind: str,
    round_index: int,
    client: int,
    call: int,
    metadata: tuple[tuple[str, str], ...],
) -> int:
    """One RPC of ``kind``, its answers checked; returns the number of texts answered."""
    options = {"timeout": spec.timeout_s, "metadata": metadata or None}
    common = {"model": spec.model, "max_length": spec.max_length}
    if kind == "predict":
        texts = _texts(round_index, client, call, 1 + call % 3, 2)
        response = await stub.Predict(pb.PredictRequest(texts=texts, **common), **options)
        answers = [(response.results, texts)]
    elif kind in ("tokens", "sentences"):
        sentences = kind == "sentences"
        texts = _texts(round_index, client, call, 1 + call % 2, 3 if sentences else 2)
        request = pb.AttributeRequest(
            texts=texts, token_attributions=not sentences, sentence_attributions=sentences, **common
        )
        response = await stub.Attribute(request, **options)
        answers = [(response.results, texts)]
    else:
        batches = [
            _texts(round_index, client, call * 100 + i, 1, 2) for i in range(STREAM_REQUESTS)
        ]
        requests = [
            pb.AttributeRequest(texts=texts, token_attributions=True, **common) for texts in batches
        ]
        responses = [r async for r in stub.AttributeStream(iter(requests), **options)]
        if len(responses) != len(requests):
            raise Mismatch(f"stream: {len(responses)} responses to {len(requests)} requests")
        answers = [(r.results, texts) for r, texts in zip(responses, batches, strict=True)]
    count = 0
    for results, texts in answers:
        if len(results) != len(texts):
            raise Mismatch(f"{kind}: {len(results)} results for {len(texts)} texts")
        for result, text in zip(results, texts, strict=True):
            check_result(result, text, labels, kind)
        count += len(texts)
    return count


async def _labels(channel: grpc.aio.Channel, spec: LoadSpec, metadata: Any) -> list[str]:
    answer = await pb_grpc.AttributorStub(channel).ListModels(
        pb.ListModelsRequest(), timeout=30, metadata=metadata
    )
    models = {model.name: model for model in answer.models}
    model = models[spec.model] if spec.model else next(iter(models.values()))
    return list(model.labels)


async def run_load(
    address: str,
    spec: LoadSpec,
    *,
    round_index: int = 0,
    metadata: tuple[tuple[str, str], ...] = (),
) -> LoadReport:
    """One round of load on the server at ``address`` (each client on its own channel)."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(spec.clients)]
    try:
        labels = await _labels(channels[0], spec, metadata or None)
        report = LoadReport()
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _client(
                    pb_grpc.AttributorStub(channel),
                    spec,
                    labels,
                    round_index,
                    client,
                    report,
                    metadata,
                )
                for client, channel in enumerate(channels)
            )
        )
        report.seconds = time.perf_counter() - started
        return report
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


async def health(address: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


async def burst(address: str, requests: int, texts_per_request: int) -> dict[str, Any]:
    """``requests`` Predict calls sent at once on one channel: how each ended and how long the
    refusals and the answers took."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AttributorStub(channel)

        async def one(index: int) -> tuple[str, float]:
            texts = _texts(9, index, 0, texts_per_request, 2)
            started = time.perf_counter()
            try:
                response = await stub.Predict(pb.PredictRequest(texts=texts), timeout=120)
            except grpc.aio.AioRpcError as exc:
                return exc.code().name, time.perf_counter() - started
            if [result.text for result in response.results] != texts:
                return "MISMATCH", time.perf_counter() - started
            return "OK", time.perf_counter() - started

        outcomes = await asyncio.gather(*(one(i) for i in range(requests)))
    by_code: dict[str, list[float]] = {}
    for code, seconds in outcomes:
        by_code.setdefault(code, []).append(seconds)
    return {code: latency(values) for code, values in by_code.items()}


def _rss_mb(pid: int) -> float:
    return round(rss_bytes(pid) / 2**20, 1)


def main(argv: Sequence[str] | None = None) -> int:
    from gradlight.bench.served import ServerProcess

    parser = argparse.ArgumentParser(prog="python -m gradlight.bench.load", description=__doc__)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=8, help="calls per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads")
    parser.add_argument("--overload", action="store_true", help="also burst a small queue")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    args = parser.parse_args(argv)
    spec = LoadSpec(clients=args.clients, requests_per_client=args.requests)
    report: dict[str, Any] = {
        "artifact": str(args.artifact),
        "machine": {
            "cpu": cpu_name(),
            "cores_available": cores_available(),
            "onnxruntime_intra_op_threads": args.threads or "one per core",
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
            "onnxruntime": onnxruntime.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        "spec": asdict(spec),
        "rounds": [],
    }
    with ServerProcess.for_bench(args.artifact, "cpu", args.threads) as server:
        report["rss_mb_before"] = _rss_mb(server.process.pid)
        for round_index in range(args.rounds):
            result = asyncio.run(run_load(server.address, spec, round_index=round_index))
            entry = result.summary()
            entry["rss_mb_after"] = _rss_mb(server.process.pid)
            entry["health"] = asyncio.run(health(server.address))
            entry["error_samples"] = result.errors[:5]
            report["rounds"].append(entry)
            print(json.dumps(entry), flush=True)
    if args.overload:
        extra = ["--max-queue-size", "8", "--max-wait-ms", "500", "--max-batch-size", "64"]
        with ServerProcess.for_bench(args.artifact, "cpu", args.threads, extra) as server:
            report["overload"] = {
                "max_queue_size": 8,
                "max_wait_ms": 500,
                "requests": 64,
                "texts_per_request": 2,
                "outcomes": asyncio.run(burst(server.address, 64, 2)),
                "health_after": asyncio.run(health(server.address)),
            }
            print(json.dumps(report["overload"]), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    failed = any(entry["errors"] for entry in report["rounds"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
