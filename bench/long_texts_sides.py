"""The two sides of the long-document bench (bench/long_texts.py), each answering one text for
one cell: gradlight's serving code in process, and the best eager PyTorch for the same windows.

An answer holds the document's raw token scores ``[K, S]`` (every label), its probabilities
``[K]``, each window's probabilities ``[W, K]`` and the character span of each window's text
tokens ``[W, 2]`` (a truncated text: one window, its own).

- ``Served``: ``Engine`` + ``DynamicBatcher`` (the server's default ``BatchSettings``) +
  ``Attributor``, one request per text with the cell's ``long_texts``, raw scores, every label;
  its time includes tokenizing, cutting into windows, the batcher's calls and stitching.
- ``Eager``: the text tokenized whole with the artifact's tokenizer and cut into the same
  windows (runtime/explanation/windows.py's ``split``, the default stride), the windows stacked
  into one batch (all of them the window's length, no padding), a frozen model with the word
  embeddings' output swapped by a forward hook. Input x gradient: ONE forward over every
  window, then one ``torch.autograd.grad`` per label of the sum over windows of that label's
  logit. Integrated gradients: bench/integrated_methods.py's ``EagerBestIG`` (every window's
  points of a chunk of steps in one forward shared by the labels, one ``autograd.grad`` per
  label; whole steps of every window per chunk, up to ``eager_tokens_per_call`` rows x tokens),
  and one no-grad forward over the windows for their logits. Then, as the runtime does, the
  windows' logits aggregated (``aggregate``) and each token's scores taken from the window it
  is most central in (``stitch``); ``bf16``: under ``torch.autocast`` bf16, the gradient x
  input product and its sum in fp32.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.artifact.manifest import load_manifest
from gradlight.runtime.execution.scores import probabilities
from gradlight.runtime.execution.tokenization import EncodedText, TextEncoder
from gradlight.runtime.explanation.windows import (
    Layout,
    Window,
    aggregate,
    default_aggregation,
    default_stride,
    split,
    stitch,
)
from gradlight.runtime.settings import DocumentSettings
from gradlight.wire.methods import INPUT_X_GRADIENT, INTEGRATED_GRADIENTS

WINDOWS, TRUNCATE = "windows", "truncate"


@dataclass(frozen=True)
class Answer:
    raw: np.ndarray  # [K, S]
    probabilities: np.ndarray  # [K]
    window_probabilities: np.ndarray  # [W, K]
    window_spans: np.ndarray  # [W, 2]
    steps: int = 0

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "raw": self.raw.astype(np.float32),
            "probabilities": self.probabilities.astype(np.float64),
            "window_probabilities": self.window_probabilities.astype(np.float64),
            "window_spans": self.window_spans.astype(np.int64),
        }


def document_windows(encoder: TextEncoder, text: str, max_length: int) -> tuple[EncodedText, list]:
    """``text`` tokenized whole (up to the server's default document limit) and its windows of
    ``max_length`` tokens at the default stride: what the runtime reads."""
    budget = DocumentSettings().max_document_tokens + encoder.num_special_tokens
    (document,) = encoder.encode([text], budget)
    stride = default_stride(max_length, Layout.of(document))
    return document, split(document, max_length, stride)


def content_span(encoded: EncodedText) -> tuple[int, int]:
    """The characters of ``encoded``'s text tokens."""
    spans = [s for s, special in zip(encoded.offsets, encoded.special, strict=True) if not special]
    return min((s for s, _ in spans), default=0), max((e for _, e in spans), default=0)


class Served:
    """gradlight's serving code in process at one precision (``auto``: the server's default)."""

    def __init__(self, job: dict[str, Any]) -> None:
        from gradlight.runtime.execution.batcher import DynamicBatcher
        from gradlight.runtime.execution.engine import Engine
        from gradlight.runtime.explanation.attributor import Attributor
        from gradlight.runtime.settings import BatchSettings, EngineSettings

        settings = EngineSettings(
            provider="cpu", intra_op_threads=job["threads"], precision=job["precision"]
        )
        self.engine = Engine(Path(job["artifact"]), settings)
        self.engine.warm_up()
        self.precision = self.engine.precision
        self.loop = asyncio.new_event_loop()
        self.batcher = DynamicBatcher(self.engine, BatchSettings())
        self.loop.run_until_complete(self._start())
        self.attributor = Attributor(self.engine, self.batcher, max_texts=8)

    async def _start(self) -> None:
        self.batcher.start()

    def answer(self, cell: dict[str, Any], text: str) -> Answer:
        from gradlight.runtime.explanation.requests import AttributeOptions

        fields: dict[str, Any] = {"method": cell["method"]}
        if cell["method"] == INTEGRATED_GRADIENTS:
            fields.update(steps=cell["steps"], integration=cell["integration"], baseline="pad")
        options = AttributeOptions(
            max_length=cell["max_length"],
            raw_scores=True,
            long_texts=cell["long_texts"],
            **fields,
        )
        (result,) = self.loop.run_until_complete(self.attributor.run([text], options))
        if result.windows:
            window_probabilities = np.stack([w.probabilities for w in result.windows])
            spans = np.asarray([(w.start, w.end) for w in result.windows])
        else:
            window_probabilities = result.probabilities[None]
            spans = np.asarray([content_span(result.encoded)])
        return Answer(
            result.raw_scores, result.probabilities, window_probabilities, spans, result.steps
        )

    def calls(self) -> list[tuple[int, int]] | None:
        """``(rows, width)`` of the batcher's calls since the last ``calls`` (None: more than
        its history holds)."""
        history = self.batcher.history
        full = len(history) == history.maxlen
        seen = [(record.rows, record.width) for record in history]
        history.clear()
        return None if full else seen

    def close(self) -> None:
        self.loop.run_until_complete(self.batcher.close())
        self.loop.close()


class Eager:
    """The best eager PyTorch for the same windows (the module's docstring), with eager
    attention and SDPA loaded (``ways``): the worker keeps the faster per cell."""

    def __init__(self, job: dict[str, Any]) -> None:
        import torch

        from gradlight.bench.integrated_methods import EagerBestIG

        torch.set_num_threads(job["threads"])
        manifest = load_manifest(Path(job["artifact"]), verify_files=False)
        self.multi_label = manifest.multi_label
        self.pad_id = manifest.pad_token_id
        tokenizer = Path(job["artifact"]) / manifest.tokenizer_dir / "tokenizer.json"
        self.encoder = TextEncoder(tokenizer)
        model_job = {
            "model_dir": job["model_dir"],
            "uses_token_type_ids": manifest.uses_token_type_ids,
        }
        self.ways: dict[str, Any] = {}
        for attention in ("sdpa", "eager"):
            try:
                self.ways[attention] = EagerBestIG(model_job, attention, job["bf16"])
            except (ValueError, ImportError):  # no SDPA for this architecture
                continue
        self.labels = tuple(range(len(manifest.labels)))
        self.tokens_per_call = job["eager_tokens_per_call"]

    def answer(self, cell: dict[str, Any], text: str, attention: str) -> Answer:
        from gradlight.bench.integrated_methods import Ask, Tokens

        if cell["long_texts"] != WINDOWS:
            raise ValueError("the eager side reads texts as windows only")
        document, windows = document_windows(self.encoder, text, cell["max_length"])
        rows = Tokens([window.encoded for window in windows], self.pad_id)
        way = self.ways[attention]
        if cell["method"] == INPUT_X_GRADIENT:
            logits, raw = _input_x_gradient(way, rows, self.labels)
        else:
            width = len(windows[0].encoded)
            per_call = max(len(windows), self.tokens_per_call // width)
            ask = Ask(self.labels, cell["steps"], cell["integration"], per_call)
            logits, raw = _logits(way, rows), way.attribute(rows, ask)
        return self._combine(document, windows, logits, raw)

    def _combine(
        self, document: EncodedText, windows: list[Window], logits: np.ndarray, raw: np.ndarray
    ) -> Answer:
        rule = default_aggregation(self.multi_label)
        scores = stitch(len(document), windows, [raw[i] for i in range(len(windows))])
        return Answer(
            scores,
            probabilities(aggregate(logits, rule), self.multi_label),
            probabilities(logits, self.multi_label),
            np.asarray([content_span(window.encoded) for window in windows]),
        )


def _logits(way: Any, rows: Any) -> np.ndarray:
    """``[W, L]``: one no-grad forward over every window."""
    import torch

    with torch.no_grad(), way._autocast():
        logits = way.model(input_ids=rows.ids, **way._kwargs(rows)).logits
    return logits.float().numpy()


def _input_x_gradient(way: Any, rows: Any, labels: tuple[int, ...]) -> tuple[np.ndarray, Any]:
    """``([W, L] logits, [W, K, S] raw scores)``: one forward over every window, one
    ``autograd.grad`` per label of its logit summed over the windows."""
    import torch

    captured: dict[str, Any] = {}

    def swap_for_leaf(_module: Any, _inputs: Any, output: Any) -> Any:
        captured["embeds"] = output.detach().requires_grad_(True)
        return captured["embeds"]

    handle = way.embeddings.register_forward_hook(swap_for_leaf)
    try:
        with torch.enable_grad(), way._autocast():
            logits = way.model(input_ids=rows.ids, **way._kwargs(rows)).logits
            embeds = captured["embeds"]
            raw = []
            for position, label in enumerate(labels):
                (grad,) = torch.autograd.grad(
                    logits[:, label].sum(), embeds, retain_graph=position < len(labels) - 1
                )
                raw.append((grad.float() * embeds.detach().float()).sum(-1))
    finally:
        handle.remove()
    return logits.detach().float().numpy(), torch.stack(raw, dim=1).numpy()
