"""Tiny classifiers of every supported architecture, built from configs, with tokenizers
trained in the test on a small corpus. Nothing is downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS = [
    "The patient denies chest pain and shortness of breath.",
    "No evidence of pneumonia on the chest x-ray.",
    "Cannot rule out pulmonary embolism; CT angiogram recommended.",
    "She reports worsening cough over the last three days.",
    "Dr. Smith started amoxicillin 500 mg b.i.d. for ten days.",
    "Possible early appendicitis, e.g. tenderness in the right lower quadrant.",
    "He was discharged home in stable condition.",
    "Blood pressure 132/84, heart rate 76, afebrile.",
    "The movie was wonderful and the acting superb.",
    "I did not enjoy the food; the service was slow.",
    "Café résumé naïve coöperate — 東京 病院 😀 emoji test.",
    "Follow up with cardiology in two weeks.",
]

WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BPE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _wordpiece_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        CORPUS * 4, WordPieceTrainer(vocab_size=vocab_size, special_tokens=WORDPIECE_SPECIALS)
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def _bpe_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(
        CORPUS * 4,
        BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=BPE_SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")),
        ("<s>", tokenizer.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def make_tokenizer(model_type: str) -> Any:
    """A transformers fast tokenizer trained on ``CORPUS``."""
    from transformers import PreTrainedTokenizerFast

    if model_type == "roberta":
        return PreTrainedTokenizerFast(
            tokenizer_object=_bpe_tokenizer(400),
            bos_token="<s>",
            eos_token="</s>",
            cls_token="<s>",
            sep_token="</s>",
            pad_token="<pad>",
            unk_token="<unk>",
            mask_token="<mask>",
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=_wordpiece_tokenizer(200),
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def _config(model_type: str, vocab_size: int, num_labels: int, pad_token_id: int) -> Any:
    from transformers import BertConfig, DistilBertConfig, ElectraConfig, RobertaConfig

    common = {"vocab_size": vocab_size, "num_labels": num_labels, "pad_token_id": pad_token_id}
    if model_type == "bert":
        return BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            **common,
        )
    if model_type == "roberta":
        return RobertaConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=66,
            type_vocab_size=1,
            bos_token_id=0,
            eos_token_id=2,
            **common,
        )
    if model_type == "distilbert":
        return DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64, **common
        )
    if model_type == "electra":
        return ElectraConfig(
            embedding_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            **common,
        )
    raise ValueError(model_type)


ARCHITECTURES = ("bert", "roberta", "distilbert", "electra")


@dataclass(frozen=True)
class TinyModel:
    model_type: str
    path: Path
    num_labels: int


def save_tiny_classifier(
    directory: Path,
    model_type: str,
    num_labels: int = 3,
    *,
    multi_label: bool = False,
    seed: int = 0,
    with_tokenizer: bool = True,
) -> TinyModel:
    """Build a seeded tiny ``*ForSequenceClassification`` and ``save_pretrained`` it."""
    import torch
    from transformers import AutoModelForSequenceClassification

    tokenizer = make_tokenizer(model_type)
    config = _config(model_type, len(tokenizer), num_labels, tokenizer.pad_token_id)
    config.id2label = {i: f"label_{i}" for i in range(num_labels)}
    config.label2id = {name: i for i, name in config.id2label.items()}
    if multi_label:
        config.problem_type = "multi_label_classification"
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    # Random init gives tiny logits; scale the head so labels and gradients differ visibly.
    with torch.no_grad():
        for parameter in model.classifier.parameters():
            parameter.mul_(8.0)
    model.save_pretrained(directory)
    if with_tokenizer:
        tokenizer.save_pretrained(directory)
    return TinyModel(model_type, directory, num_labels)
