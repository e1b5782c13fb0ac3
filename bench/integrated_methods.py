"""The three timed ways of integrated gradients, as bench/integrated_worker.py's processes run
them: Captum's LayerIntegratedGradients, eager-best PyTorch and gradlight's serving code (what
each computes: bench/integrated.py's docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.artifact.manifest import ATTRIBUTION_PATH
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.methods import integration_points
from gradlight.wire.methods import INTEGRATED_GRADIENTS


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


def _load_model(model_dir: Path, attention: str) -> Any:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, local_files_only=True, attn_implementation=attention
    )
    model.eval()
    model.requires_grad_(False)
    return model


class _Eager:
    """Shared by the two eager ways: the model, its inputs, the integration rule."""

    def __init__(self, job: dict[str, Any], attention: str) -> None:
        self.model = _load_model(Path(job["model_dir"]), attention)
        self.attention = attention
        self.types = job["uses_token_type_ids"]
        self.labels = list(job["labels"])
        self.steps, self.integration = job["steps"], job["integration"]
        self.rows_per_call = job["rows_per_call"]

    def _kwargs(self, tokens: Tokens, repeat: int = 1) -> dict[str, Any]:
        kwargs = {"attention_mask": tokens.mask.repeat(repeat, 1)}
        if self.types:
            kwargs["token_type_ids"] = tokens.types.repeat(repeat, 1)
        return kwargs


class CaptumIG(_Eager):
    """Captum's LayerIntegratedGradients on the input embeddings, one call per label."""

    def __init__(self, job: dict[str, Any]) -> None:
        from captum.attr import LayerIntegratedGradients

        super().__init__(job, "eager")
        model, types = self.model, self.types

        def forward_func(ids: Any, mask: Any, token_types: Any) -> Any:
            if types:
                return model(input_ids=ids, attention_mask=mask, token_type_ids=token_types).logits
            return model(input_ids=ids, attention_mask=mask).logits

        self.ig = LayerIntegratedGradients(forward_func, model.get_input_embeddings())

    def attribute(self, tokens: Tokens) -> np.ndarray:
        """Raw scores ``[B, K, S_padded]``."""
        per_label = []
        for label in self.labels:
            attributions = self.ig.attribute(
                tokens.ids,
                baselines=tokens.baseline_ids,
                target=label,
                additional_forward_args=(tokens.mask, tokens.types),
                n_steps=self.steps,
                method=self.integration,
                internal_batch_size=max(self.rows_per_call, len(tokens.lengths)),
            )
            per_label.append(attributions.sum(-1).detach())
        import torch

        return torch.stack(per_label, dim=1).float().numpy()


class EagerBestIG(_Eager):
    """All (text, step) points of a chunk in one forward shared by every label; one
    ``autograd.grad`` to the points per label."""

    def __init__(self, job: dict[str, Any], attention: str) -> None:
        import torch

        super().__init__(job, attention)
        self.embeddings = self.model.get_input_embeddings()
        alphas, weights = integration_points(self.integration, self.steps)
        self.alphas = torch.tensor(alphas, dtype=torch.float32)
        self.weights = torch.tensor(weights, dtype=torch.float32)

    def attribute(self, tokens: Tokens) -> np.ndarray:
        import torch

        batch, width = tokens.ids.shape
        with torch.no_grad():
            embeds = self.embeddings(tokens.ids)
            baseline = self.embeddings(tokens.baseline_ids)
            difference = embeds - baseline
        hidden = embeds.shape[-1]
        totals = torch.zeros((len(self.labels), batch, width, hidden), dtype=torch.float32)
        per_chunk = max(1, self.rows_per_call // batch)
        for first in range(0, self.steps, per_chunk):
            alphas = self.alphas[first : first + per_chunk]
            weights = self.weights[first : first + per_chunk]
            count = len(alphas)
            with torch.no_grad():
                points = baseline[None] + alphas[:, None, None, None] * difference[None]
            points = points.reshape(count * batch, width, hidden).requires_grad_(True)
            handle = self.embeddings.register_forward_hook(lambda _m, _i, _o, p=points: p)
            try:
                with torch.enable_grad():
                    logits = self.model(
                        input_ids=tokens.ids.repeat(count, 1), **self._kwargs(tokens, count)
                    ).logits
                    for position, label in enumerate(self.labels):
                        (grad,) = torch.autograd.grad(
                            logits[:, label].sum(),
                            points,
                            retain_graph=position < len(self.labels) - 1,
                        )
                        totals[position] += torch.tensordot(
                            weights, grad.view(count, batch, width, hidden), dims=1
                        )
            finally:
                handle.remove()
        scores = (totals * difference[None]).sum(-1)  # [K, B, S]
        return scores.transpose(0, 1).numpy()


class GradlightIG:
    """The serving code in process: one Attributor request per batch of texts."""

    def __init__(self, job: dict[str, Any]) -> None:
        import asyncio

        from gradlight.runtime.execution.batcher import DynamicBatcher
        from gradlight.runtime.execution.engine import Engine
        from gradlight.runtime.explanation.attributor import Attributor
        from gradlight.runtime.explanation.requests import AttributeOptions
        from gradlight.runtime.settings import BatchSettings, EngineSettings

        engine = Engine(
            Path(job["artifact"]),
            EngineSettings(provider="cpu", intra_op_threads=job["threads"], precision="fp32"),
        )
        engine.warm_up()
        defaults = BatchSettings()
        labels = job["labels"]
        rows = job["batch"] * (len(labels) * job["steps"] + 2)
        settings = BatchSettings(
            max_batch_size=job["rows_per_call"],
            max_queue_size=max(defaults.max_queue_size, rows),
            max_tokens_per_batch=job["rows_per_call"] * job["max_length"],
        )
        self.loop = asyncio.new_event_loop()
        self.batcher = DynamicBatcher(engine, settings)
        self.loop.run_until_complete(self._start())
        self.attributor = Attributor(engine, self.batcher, max_texts=max(256, job["batch"]))
        every = list(range(len(engine.labels)))
        self.options = AttributeOptions(
            max_length=job["max_length"],
            token_attributions=True,
            labels=() if labels == every else tuple(engine.labels[k] for k in labels),
            raw_scores=True,
            method=INTEGRATED_GRADIENTS,
            steps=job["steps"],
            integration=job["integration"],
            baseline="pad",
        )
        self.attention = ""

    async def _start(self) -> None:
        self.batcher.start()

    def attribute(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Raw scores ``[K, S]`` per text."""
        results = self.loop.run_until_complete(self.attributor.run(list(texts), self.options))
        return [result.raw_scores for result in results]  # type: ignore[union-attr]

    def path_calls(self) -> list[tuple[int, int]] | None:
        """``(rows, width)`` of the path graph's calls since the last ``path_calls`` (None
        when the batcher's history of recent calls overflowed)."""
        history = self.batcher.history
        full = len(history) == history.maxlen
        calls = [(c.rows, c.width) for c in history if c.graph == ATTRIBUTION_PATH]
        history.clear()
        return None if full else calls

    def close(self) -> None:
        self.loop.run_until_complete(self.batcher.close())
        self.loop.close()
