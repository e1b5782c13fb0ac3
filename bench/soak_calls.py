"""The soak's calls (``gradlight.bench.soak``): the mix of call kinds, each call made and its
answer checked (valid calls by ``gradlight.bench.load``'s checks and the method fields asked;
bad inputs by their status code and the field it names), and what the run records."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from gradlight.bench.load import KINDS as LOAD_KINDS
from gradlight.bench.load import LoadSpec, Mismatch, _one_call, _texts, check_result
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc
from gradlight.wire.error_details import error_details
from gradlight.wire.methods import FEJER, GRADIENT_SHAP, INPUT_X_GRADIENT, INTEGRATED_GRADIENTS

MODEL = "soak"
METHOD_FIELDS = {  # kind: the AttributeRequest's method fields
    "integrated_gradients": {"method": INTEGRATED_GRADIENTS, "steps": 8},
    "ig_fejer_tolerance": {
        "method": INTEGRATED_GRADIENTS,
        "integration": FEJER,
        "steps": 32,
        "completeness_tolerance": 0.05,
    },
    "gradient_shap": {"method": GRADIENT_SHAP, "samples": 4},
    "label_subset": {},
    "label_subset_ig": {"method": INTEGRATED_GRADIENTS, "steps": 8},
    "faithfulness": {"faithfulness": True},
}
BAD_INPUTS = {  # kind: (AttributeRequest fields, the status code, the field it names)
    "bad_empty_text": ({"texts": [""]}, "INVALID_ARGUMENT", "texts[0]"),
    "bad_label": ({"labels": ["no-such-label"]}, "INVALID_ARGUMENT", "labels[0]"),
    "bad_max_length": ({"max_length": -1}, "INVALID_ARGUMENT", "max_length"),
    "bad_model": ({"model": "no-such-model"}, "NOT_FOUND", "model"),
}
CALL_TIMEOUT_S = 120.0
SPEC = LoadSpec(clients=1, timeout_s=CALL_TIMEOUT_S)  # for load's calls: the model's max_length


def kinds(methods: Sequence[str]) -> tuple[str, ...]:
    """The calls' kinds for a model serving ``methods`` (the path methods need its path graph)."""
    served = [k for k, f in METHOD_FIELDS.items() if f.get("method", INPUT_X_GRADIENT) in methods]
    return (*LOAD_KINDS, *served, *BAD_INPUTS)


def _check_attribution(
    result: pb.TextResult,
    text: str,
    labels: Sequence[str],
    asked: list[str],
    kind: str,
    fields: dict[str, Any],
) -> None:
    if result.predicted_label not in labels or list(result.labels) != asked:
        raise Mismatch(f"{kind}: labels {list(result.labels)} in the answer to {asked}")
    shown = pb.TextResult()  # predicted over all labels; the rest in the asked labels' order
    shown.CopyFrom(result)
    shown.predicted_label = asked[0]
    check_result(shown, text, asked, "tokens")
    method = fields.get("method", INPUT_X_GRADIENT)
    if result.method != method:
        raise Mismatch(f"{kind}: method {result.method!r} in the answer to {method!r}")
    if method != INPUT_X_GRADIENT and (
        len(result.completeness_gaps) != len(asked) or not result.steps
    ):
        raise Mismatch(f"{kind}: no completeness gap per label, or no steps")
    if "seed" in fields and result.seed != fields["seed"]:
        raise Mismatch(f"{kind}: seed {result.seed} in the answer to seed {fields['seed']}")
    if fields.get("faithfulness") and len(result.faithfulness.comprehensiveness) != len(asked):
        raise Mismatch(f"{kind}: no faithfulness per label")


async def _attribute_call(
    stub: pb_grpc.AttributorStub, kind: str, labels: Sequence[str], seq: int, client: int
) -> None:
    """An Attribute call of one of ``METHOD_FIELDS``' kinds, its answer checked."""
    texts = _texts(seq, client, 0, 1 + seq % 2, 2)
    fields = dict(METHOD_FIELDS[kind])
    asked = [labels[-1], labels[0]] if kind.startswith("label_subset") else list(labels)
    if kind.startswith("label_subset"):
        fields["labels"] = asked
    if kind in (GRADIENT_SHAP, "faithfulness"):
        fields["seed"] = seq
    request = pb.AttributeRequest(texts=texts, token_attributions=True, **fields)
    response = await stub.Attribute(request, timeout=CALL_TIMEOUT_S)
    if len(response.results) != len(texts):
        raise Mismatch(f"{kind}: {len(response.results)} results for {len(texts)} texts")
    for result, text in zip(response.results, texts, strict=True):
        _check_attribution(result, text, labels, asked, kind, fields)


async def _bad_call(stub: pb_grpc.AttributorStub, kind: str, seq: int, client: int) -> None:
    """A bad request of ``BAD_INPUTS``: Mismatch unless refused with its code and field."""
    fields, code, named = BAD_INPUTS[kind]
    texts = _texts(seq, client, 0, 1, 1)
    request = pb.AttributeRequest(**{"texts": texts, "token_attributions": True, **fields})
    try:
        await stub.Attribute(request, timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        got = error_details(exc)
        if got.code.name != code or got.field != named:
            raise Mismatch(f"{kind}: {got.code.name} naming {got.field!r}: {got.message}") from None
        return
    raise Mismatch(f"{kind}: answered; expected {code} naming {named}")


@dataclass
class Soak:
    """What the run records; ``events``: (start s, kind, seconds, outcome) per call, outcome
    one of ok, lost, refused (a bad input refused as it must be) and wrong."""

    started: float = field(default_factory=time.perf_counter)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    events: list[tuple[float, str, float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    reloads: list[dict[str, Any]] = field(default_factory=list)
    damage: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    process: Any = None  # the server's subprocess.Popen

    def now(self) -> float:
        return time.perf_counter() - self.started

    async def wait_until(self, at: float) -> bool:
        """Wait until ``at`` seconds into the run; True when the run stopped first."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, at - self.now()))
        return self.stop.is_set()

    def server_gone(self) -> bool:
        return self.process is not None and self.process.poll() is not None


async def _one(
    stub: pb_grpc.AttributorStub, labels: Sequence[str], kind: str, seq: int, client: int
) -> tuple[str, str]:
    """One call of ``kind``: its outcome and, unless ok, what went wrong."""
    try:
        if kind in BAD_INPUTS:
            await _bad_call(stub, kind, seq, client)
            return "refused", ""
        if kind in LOAD_KINDS:
            await _one_call(stub, SPEC, labels, kind, seq, client, seq, ())
        else:
            await _attribute_call(stub, kind, labels, seq, client)
        return "ok", ""
    except grpc.aio.AioRpcError as exc:
        return "lost", f"{kind}: {exc.code().name}: {exc.details()}"
    except Mismatch as exc:
        return ("wrong" if kind in BAD_INPUTS else "lost"), str(exc)


async def _client(
    address: str, labels: Sequence[str], mix: Sequence[str], client: int, soak: Soak
) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AttributorStub(channel)
        seq = 0
        while not soak.stop.is_set():
            kind = mix[(client + seq) % len(mix)]
            started = soak.now()
            outcome, error = await _one(stub, labels, kind, seq, client)
            soak.events.append((round(started, 3), kind, soak.now() - started, outcome))
            if error and sum(e.split(": ")[1] == kind for e in soak.errors) < 5:
                soak.errors.append(f"{started:.1f} s: {error}")
            if error and soak.server_gone():
                soak.stop.set()  # the sampler records the death
            elif error:  # a server going down fails calls at once: no flood of failures
                await asyncio.sleep(0.1)
            seq += 1
