"""The ways of integrated gradients that bench/integrated_worker.py's processes run: Captum's
LayerIntegratedGradients, eager-best PyTorch (fp32, or under bf16 autocast), the untimed
64-step reference, and gradlight's serving code (what each computes: bench/integrated.py's
docstring). A method is loaded once and called per batch with the cell's settings (``Ask``)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.artifact.manifest import ATTRIBUTION_PATH
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.methods import integration_points
from gradlight.wire.methods import INTEGRATED_GRADIENTS


@dataclass(frozen=True)
class Ask:
    """What a cell asks of a method: the labels (indices), the steps and rule, the rows per
    model call (eager-best's chunk of points, Captum's ``internal_batch_size``; gradlight's
    are its batcher's) and gradlight's completeness tolerance (0: fixed steps)."""

    labels: tuple[int, ...]
    steps: int
    integration: str
    rows_per_call: int
    tolerance: float = 0.0

    @classmethod
    def of(cls, cell: dict[str, Any]) -> Ask:
        return cls(
            tuple(cell["labels"]),
            cell["steps"],
            cell["integration"],
            cell["rows_per_call"],
            cell.get("tolerance", 0.0),
        )


class Tokens:
    """A batch of texts as the artifact's tokenizer reads them: right-padded ids, mask, token
    types, and where the pad baseline keeps the token's own vector (special tokens and
    padding)."""

    def __init__(self, rows: Sequence[EncodedText], pad_id: int) -> None:
        import torch

        width = max(len(row) for row in rows)
        self.ids = torch.full((len(rows), width), pad_id, dtype=torch.int64)
        self.mask = torch.zeros((len(rows), width), dtype=torch.int64)
        self.types = torch.zeros((len(rows), width), dtype=torch.int64)
        self.keep = torch.ones((len(rows), width), dtype=torch.bool)
        for index, row in enumerate(rows):
            n = len(row)
            self.ids[index, :n] = torch.from_numpy(np.asarray(row.ids, dtype=np.int64))
            self.types[index, :n] = torch.from_numpy(np.asarray(row.type_ids, dtype=np.int64))
            self.mask[index, :n] = 1
            self.keep[index, :n] = torch.tensor(row.special, dtype=torch.bool)
        self.baseline_ids = torch.where(self.keep, self.ids, torch.full_like(self.ids, pad_id))
        self.lengths = [len(row) for row in rows]

    def first(self) -> Tokens:
        """The batch's first text alone, without padding."""
        one = Tokens.__new__(Tokens)
        width = self.lengths[0]
        for key in ("ids", "mask", "types", "keep", "baseline_ids"):
            setattr(one, key, getattr(self, key)[:1, :width])
        one.lengths = self.lengths[:1]
        return one


def _load_model(model_dir: Path, attention: str) -> Any:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, local_files_only=True, attn_implementation=attention
    )
    model.eval()
    model.requires_grad_(False)
    return model


class _Eager:
    """Shared by the eager ways: the frozen model and its inputs."""

    def __init__(self, job: dict[str, Any], attention: str) -> None:
        self.model = _load_model(Path(job["model_dir"]), attention)
        self.attention = attention
        self.types = job["uses_token_type_ids"]

    def _kwargs(self, tokens: Tokens, repeat: int = 1) -> dict[str, Any]:
        kwargs = {"attention_mask": tokens.mask.repeat(repeat, 1)}
        if self.types:
            kwargs["token_type_ids"] = tokens.types.repeat(repeat, 1)
        return kwargs

    def deltas(self, tokens: Tokens, labels: Sequence[int]) -> np.ndarray:
        """f(x) - f(b) of ``labels``, ``[B, K]``: the logits at the input and at the baseline."""
        import torch

        with torch.no_grad():
            at_input = self.model(input_ids=tokens.ids, **self._kwargs(tokens)).logits
            at_baseline = self.model(input_ids=tokens.baseline_ids, **self._kwargs(tokens)).logits
        return (at_input - at_baseline)[:, list(labels)].double().numpy()


class CaptumIG(_Eager):
    """Captum's LayerIntegratedGradients on the input embeddings, one call per label, as users
    run it (eager attention, fp32)."""

    def __init__(self, job: dict[str, Any]) -> None:
        from captum.attr import LayerIntegratedGradients

        super().__init__(job, "eager")
        model, types = self.model, self.types

        def forward_func(ids: Any, mask: Any, token_types: Any) -> Any:
            if types:
                return model(input_ids=ids, attention_mask=mask, token_type_ids=token_types).logits
            return model(input_ids=ids, attention_mask=mask).logits

        self.ig = LayerIntegratedGradients(forward_func, model.get_input_embeddings())

    def attribute(self, tokens: Tokens, ask: Ask) -> np.ndarray:
        """Raw scores ``[B, K, S_padded]``."""
        import torch

        per_label = []
        for label in ask.labels:
            attributions = self.ig.attribute(
                tokens.ids,
                baselines=tokens.baseline_ids,
                target=label,
                additional_forward_args=(tokens.mask, tokens.types),
                n_steps=ask.steps,
                method=ask.integration,
                internal_batch_size=max(ask.rows_per_call, len(tokens.lengths)),
            )
            per_label.append(attributions.sum(-1).detach())
        return torch.stack(per_label, dim=1).float().numpy()


class EagerBestIG(_Eager):
    """All (text, step) points of a chunk (every point of the batch unless ``rows_per_call``
    caps it) in one forward shared by every label; one ``autograd.grad`` to the points per
    label; under ``torch.autocast("cpu", dtype=torch.bfloat16)`` with ``bf16`` (the
    gradient x difference product and its sums in fp32)."""

    def __init__(self, job: dict[str, Any], attention: str, bf16: bool = False) -> None:
        super().__init__(job, attention)
        self.embeddings = self.model.get_input_embeddings()
        self.bf16 = bf16

    def _autocast(self) -> Any:
        import torch

        if self.bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def attribute(self, tokens: Tokens, ask: Ask) -> np.ndarray:
        """Raw scores ``[B, K, S_padded]``."""
        import torch

        rule_alphas, rule_weights = integration_points(ask.integration, ask.steps)
        all_alphas = torch.tensor(rule_alphas, dtype=torch.float32)
        all_weights = torch.tensor(rule_weights, dtype=torch.float32)
        batch, width = tokens.ids.shape
        with torch.no_grad():
            embeds = self.embeddings(tokens.ids)
            baseline = self.embeddings(tokens.baseline_ids)
            difference = embeds - baseline
        hidden = embeds.shape[-1]
        labels = list(ask.labels)
        totals = torch.zeros((len(labels), batch, width, hidden), dtype=torch.float32)
        per_chunk = max(1, ask.rows_per_call // batch)
        for first in range(0, len(all_alphas), per_chunk):
            alphas = all_alphas[first : first + per_chunk]
            weights = all_weights[first : first + per_chunk]
            count = len(alphas)
            with torch.no_grad():
                points = baseline[None] + alphas[:, None, None, None] * difference[None]
            points = points.reshape(count * batch, width, hidden).requires_grad_(True)
            handle = self.embeddings.register_forward_hook(lambda _m, _i, _o, p=points: p)
            try:
                with torch.enable_grad(), self._autocast():
                    logits = self.model(
                        input_ids=tokens.ids.repeat(count, 1), **self._kwargs(tokens, count)
                    ).logits
                    for position, label in enumerate(labels):
                        (grad,) = torch.autograd.grad(
                            logits[:, label].sum(),
                            points,
                            retain_graph=position < len(labels) - 1,
                        )
                        totals[position] += torch.tensordot(
                            weights, grad.float().view(count, batch, width, hidden), dims=1
                        )
            finally:
                handle.remove()
        scores = (totals * difference[None]).sum(-1)  # [K, B, S]
        return scores.transpose(0, 1).numpy()


@dataclass(frozen=True)
class GradlightText:
    """One text's answer from gradlight: raw scores ``[K, S]``, the steps it got, whether it
    missed the tolerance, and its completeness gaps ``[K]`` (absolute, as the runtime gives
    them: sum of scores - (f(x) - f(b)))."""

    scores: np.ndarray
    steps: int
    missed: bool
    gaps: np.ndarray | None


class GradlightIG:
    """The serving code in process: one Attributor request per batch of texts."""

    def __init__(self, job: dict[str, Any]) -> None:
        import asyncio

        from gradlight.runtime.execution.batcher import DynamicBatcher
        from gradlight.runtime.execution.engine import Engine
        from gradlight.runtime.explanation.attributor import Attributor
        from gradlight.runtime.settings import BatchSettings, EngineSettings

        engine = Engine(
            Path(job["artifact"]),
            EngineSettings(
                provider="cpu", intra_op_threads=job["threads"], precision=job["precision"]
            ),
        )
        engine.warm_up()
        self.labels = engine.labels
        defaults = BatchSettings()
        cells = job["cells"]
        # every row of a request's texts at once: L labels x (points + both ends) + 2 a text
        rows = max(len(c["batches"][0]) * (len(c["labels"]) * (c["steps"] + 2) + 2) for c in cells)
        settings = BatchSettings(
            max_batch_size=job["rows_per_call"],
            max_queue_size=max(defaults.max_queue_size, rows),
            max_tokens_per_batch=job["tokens_per_call"]
            or job["rows_per_call"] * max(c["max_length"] for c in cells),
        )
        self.loop = asyncio.new_event_loop()
        self.batcher = DynamicBatcher(engine, settings)
        self.loop.run_until_complete(self._start())
        most = max(len(batch) for c in cells for batch in c["batches"])
        self.attributor = Attributor(engine, self.batcher, max_texts=max(256, most))
        self.attention = ""
        self.precision = engine.precision  # the report's notes say it

    async def _start(self) -> None:
        self.batcher.start()

    def options(self, ask: Ask, max_length: int) -> Any:
        """The request's options: raw token scores of the cell's labels, pad baseline; with a
        tolerance, the steps chosen per text up to ``ask.steps`` (the rule: the runtime's)."""
        from gradlight.runtime.explanation.requests import AttributeOptions

        every = tuple(range(len(self.labels)))
        fields: dict[str, Any] = {
            "max_length": max_length,
            "token_attributions": True,
            "labels": () if ask.labels == every else tuple(self.labels[k] for k in ask.labels),
            "raw_scores": True,
            "method": INTEGRATED_GRADIENTS,
            "steps": ask.steps,
            "baseline": "pad",
        }
        if ask.tolerance:
            fields["completeness_tolerance"] = ask.tolerance
        else:
            fields["integration"] = ask.integration
        return AttributeOptions(**fields)

    def attribute(self, texts: Sequence[str], options: Any) -> list[GradlightText]:
        results = self.loop.run_until_complete(self.attributor.run(list(texts), options))
        return [
            GradlightText(
                result.raw_scores,  # type: ignore[union-attr]
                int(getattr(result, "steps", 0)),
                bool(getattr(result, "tolerance_missed", False)),
                getattr(result, "completeness_gaps", None),
            )
            for result in results
        ]

    def path_calls(self) -> list[tuple[int, int]] | None:
        """``(rows, width)`` of the path graph's calls since the last ``path_calls`` (None
        when the batcher's history of recent calls overflowed)."""
        history = self.batcher.history
        full = len(history) == history.maxlen
        # the path graph, or the path labels graph (one forward per point for every label)
        calls = [(c.rows, c.width) for c in history if c.graph.startswith(ATTRIBUTION_PATH)]
        history.clear()
        return None if full else calls

    def close(self) -> None:
        self.loop.run_until_complete(self.batcher.close())
        self.loop.close()
