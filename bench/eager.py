"""The eager PyTorch ways to compute the same attributions, timed against the engine.

- ``reference``: as users run it today (docs/semantics.md): every text padded to
  ``max(128, max_length)``, parameters requiring grad, one forward, then one
  ``backward(retain_graph=True)`` per label (weight gradients included) reading the embeddings'
  ``.grad``. Its semantic defect (embedding twice) is NOT copied: like gradlight it attributes
  to the word-embedding output of the model's own ``input_ids`` forward, so the agreement
  columns compare numbers, not two different definitions.
- The eager anchors, the best eager PyTorch we can write, four ways (bench/anchors.py): frozen
  parameters, padding to the longest text of the batch, ``torch.autograd.grad`` to the word
  embeddings only, labels as a subset when asked; in fp32 with eager attention
  (``eager-best``) or SDPA (``eager-best-sdpa``), and under
  ``torch.autocast("cpu", dtype=torch.bfloat16)`` with either (``eager-bf16``,
  ``eager-bf16-sdpa``). Under autocast the forward and the gradients run in bf16 where
  autocast puts them; the gradient x embedding product and its sum over the hidden axis are
  taken in fp32 (both cast to float first), as a careful user writes it.

All swap the word-embedding module's output for a leaf tensor with a forward hook, so the model
runs exactly as for a prediction (its own position ids, token types and LayerNorm). An anchor
this machine or model cannot run (SDPA for an architecture without it, bf16 on a CPU without
native bf16) raises ``AnchorUnavailable`` with the reason, which the bench reports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradlight.bench.anchors import WAYS, AnchorUnavailable, bf16_problem
from gradlight.bench.methods import Output, leave_one_out

REFERENCE_PADDING = 128


class EagerMethod:
    """Texts -> probabilities and normalized scores with a Hugging Face model in PyTorch."""

    def __init__(self, model_dir: Path, name: str, device: str = "cpu") -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if name not in WAYS:
            raise ValueError(f"unknown eager way {name!r}; known: {', '.join(WAYS)}")
        way = WAYS[name]
        self.name = name
        self.reference = way.reference
        self.bf16 = way.bf16
        self.device = torch.device(device)
        if way.bf16 and (problem := bf16_problem(self.device.type)):
            raise AnchorUnavailable(problem)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                model_dir, local_files_only=True, attn_implementation=way.attention
            )
        except (ValueError, ImportError) as exc:  # no SDPA for this architecture
            raise AnchorUnavailable(
                f"{name} needs attn_implementation={way.attention!r}, which this model does "
                f"not support: {str(exc).split('. ')[0]}"
            ) from exc
        self.attention = self.model.config._attn_implementation
        if self.attention != way.attention:
            raise AnchorUnavailable(
                f"{name} asked for {way.attention!r} attention; transformers chose "
                f"{self.attention!r}"
            )
        self.model.eval().to(self.device)
        self.multi_label = self.model.config.problem_type == "multi_label_classification"
        self.model.requires_grad_(self.reference)
        # 128, or fewer where the model has fewer positions (tiny test models)
        self.reference_padding = min(
            REFERENCE_PADDING, getattr(self.model.config, "max_position_embeddings", 512)
        )

    def _inputs(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        """Every method sees the same tokens (truncated at ``max_length``); eager-best pads to
        the longest text of the batch, the reference to ``max(128, max_length)``."""
        encoded = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=max_length,
            padding="longest",
            return_tensors="pt",
        )
        if self.reference:
            width = max(self.reference_padding, max_length)
            encoded = _pad_to(encoded, width, self.tokenizer.pad_token_id or 0)
        return {key: value.to(self.device) for key, value in encoded.items()}

    def _probabilities(self, logits: torch.Tensor) -> np.ndarray:
        if self.multi_label:
            return torch.sigmoid(logits).double().cpu().numpy()
        return torch.softmax(logits.double(), dim=-1).cpu().numpy()

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        """bf16 autocast for the bf16 anchors; nothing for the fp32 ways."""
        if self.bf16:
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    def forward(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        inputs = self._inputs(texts, max_length)
        with torch.inference_mode(), self._precision():
            logits = self.model(**inputs).logits
        return logits.float().cpu().numpy()

    def sentences(self, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
        """Leave-one-sentence-out scores ``[N, L]`` per text, as the reference computes them:
        one forward call for the full text and one per variant (gradlight's splitter, so the
        variants are the same as the engine's)."""
        results = []
        for text in texts:
            probabilities = self._one_call_each(leave_one_out(text), max_length)
            results.append(probabilities[0][None, :] - probabilities[1:])
        return results

    def _one_call_each(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        """The probabilities of ``texts`` ``[T, L]``, one forward call per text."""
        logits = np.concatenate([self.forward([text], max_length) for text in texts])
        return self._probabilities(torch.from_numpy(logits))

    def attribute(
        self,
        texts: Sequence[str],
        max_length: int,
        labels: Sequence[int] | None = None,
        sentences: bool = False,
    ) -> Output:
        """Token attributions; with ``sentences``, leave-one-sentence-out scores too
        (``_sentences_after``)."""
        output = self._attribute(texts, max_length, labels)
        if not sentences:
            return output
        return self._sentences_after(output, texts, max_length, labels)

    def _sentences_after(
        self,
        output: Output,
        texts: Sequence[str],
        max_length: int,
        labels: Sequence[int] | None,
    ) -> Output:
        """``output`` with sentence scores ``[N, K]`` per text, as the reference answers a
        request for both kinds: the full text's probabilities are the attribution forward's,
        then one forward call per variant; a text of one sentence has no variants (scores 0.0,
        nothing run)."""
        results = []
        for text, full in zip(texts, output.probabilities, strict=True):
            variants = leave_one_out(text)[1:]
            if len(variants) < 2:
                results.append(np.zeros((len(variants), len(full))))
                continue
            without = self._one_call_each(variants, max_length)
            if labels is not None:
                without = without[:, list(labels)]
            results.append(full[None, :] - without)
        return Output(output.probabilities, output.scores, results)

    def _attribute(
        self, texts: Sequence[str], max_length: int, labels: Sequence[int] | None
    ) -> Output:
        inputs = self._inputs(texts, max_length)
        captured: dict[str, torch.Tensor] = {}

        def swap_for_leaf(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
            leaf = output.detach().requires_grad_(True)
            captured["embeds"] = leaf
            return leaf

        handle = self.model.get_input_embeddings().register_forward_hook(swap_for_leaf)
        try:
            with torch.enable_grad(), self._precision():
                logits = self.model(**inputs).logits
                embeds = captured["embeds"]
                # The reference has no label subsets: it always runs every label.
                picked = (
                    list(range(logits.shape[1])) if self.reference or labels is None else labels
                )
                raw = []
                for position, label in enumerate(picked):
                    last = position == len(picked) - 1
                    if self.reference:
                        embeds.grad = None
                        logits[:, label].sum().backward(retain_graph=not last)
                        grad = embeds.grad
                    else:
                        (grad,) = torch.autograd.grad(
                            logits[:, label].sum(), embeds, retain_graph=not last
                        )
                    # fp32 product and sum (the bf16 anchors' gradients may be bf16)
                    raw.append((grad.float() * embeds.float()).sum(-1).detach())
        finally:
            handle.remove()
        if self.reference:
            self.model.zero_grad(set_to_none=True)
        raw_scores = torch.stack(raw, dim=1).float().cpu().numpy()  # [B, K, S]
        if self.reference and labels is not None:
            raw_scores = raw_scores[:, list(labels)]
        lengths = inputs["attention_mask"].sum(-1).cpu().numpy()
        probabilities = self._probabilities(logits.detach().float())
        if labels is not None:  # the attributed labels' probabilities, as the server answers
            probabilities = probabilities[:, list(labels)]
        return Output.from_raw(probabilities, raw_scores, lengths)


def _pad_to(encoded: Any, width: int, pad_id: int) -> dict[str, torch.Tensor]:
    result = {}
    for key, value in encoded.items():
        fill = pad_id if key == "input_ids" else 0
        padded = torch.full((value.shape[0], width), fill, dtype=value.dtype)
        padded[:, : value.shape[1]] = value
        result[key] = padded
    return result
