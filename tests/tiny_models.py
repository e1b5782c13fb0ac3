"""Tiny seeded classifiers, built from configs, with tokenizers trained in the test on a small
corpus the way transformers builds each architecture's fast tokenizer: WordPiece (BERT,
DistilBERT, ELECTRA, MPNet), byte-level BPE (RoBERTa, ModernBERT) and SentencePiece-like Unigram
over Metaspace (DeBERTa-v3, XLM-R, CamemBERT, ALBERT). Nothing is downloaded."""

from __future__ import annotations

from collections.abc import Callable
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


def _train(tokenizer: Any, trainer: Any) -> Any:
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    return tokenizer


def _template(tokenizer: Any, cls: str, sep: str, *, double_sep: bool = False) -> Any:
    """``cls $A sep``; a pair BERT's way (segment 1 for ``$B``) or, with ``double_sep``,
    RoBERTa's (``cls $A sep sep $B sep``, one segment)."""
    from tokenizers import processors

    pair = f"{cls} $A {sep} {sep} $B {sep}" if double_sep else f"{cls} $A {sep} $B:1 {sep}:1"
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=pair,
        special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))],
    )
    return tokenizer


def _wordpiece(vocab_size: int, specials: list[str], unk: str) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.trainers import WordPieceTrainer

    tokenizer = Tokenizer(models.WordPiece(unk_token=unk))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return _train(tokenizer, WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))


def _wordpiece_tokenizer(vocab_size: int) -> Any:
    return _template(_wordpiece(vocab_size, WORDPIECE_SPECIALS, "[UNK]"), "[CLS]", "[SEP]")


def _byte_level_bpe(
    vocab_size: int,
    specials: list[str],
    *,
    unk: str | None = None,
    normalizer: Any = None,
) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(models.BPE(unk_token=unk))
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    return _train(tokenizer, trainer)


def _bpe_tokenizer(vocab_size: int) -> Any:
    from tokenizers import processors

    tokenizer = _byte_level_bpe(vocab_size, BPE_SPECIALS, unk="<unk>")
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")),
        ("<s>", tokenizer.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )
    return tokenizer


def _unigram(
    vocab_size: int,
    steps: list[Any],
    specials: list[str],
    unk: str,
    *,
    whitespace_split: bool = True,
    byte_fallback: bool = False,
) -> Any:
    """SentencePiece-like: Unigram pieces over Metaspace ("▁" starts a word). A character the
    trainer never saw is ``unk``, or with ``byte_fallback`` its UTF-8 bytes as pieces
    ``<0xF0>``... (SentencePiece's byte fallback; each byte piece has its character's span).
    ``whitespace_split`` splits on whitespace first, as transformers' XLM-R,
    CamemBERT and ALBERT tokenizers do, so that a piece's span leaves out the space before it;
    DeBERTa-v2's doesn't, and there a "▁" piece's span starts with that space."""
    import json

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.trainers import UnigramTrainer

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence(steps)
    splits = [pre_tokenizers.WhitespaceSplit()] if whitespace_split else []
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([*splits, pre_tokenizers.Metaspace()])
    tokenizer.decoder = decoders.Metaspace()
    _train(tokenizer, UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token=unk))
    # Pieces of (nearly) equal score come out of the trainer in a different order in every run:
    # order them by name, so that a piece has the same id in every run.
    vocab = [tuple(item) for item in json.loads(tokenizer.to_str())["model"]["vocab"]]
    ordered = vocab[: len(specials)] + sorted(vocab[len(specials) :])
    if byte_fallback:
        ordered += [(f"<0x{byte:02X}>", -30.0) for byte in range(256)]
    tokenizer.model = models.Unigram(ordered, specials.index(unk), byte_fallback=byte_fallback)
    return tokenizer


def _deberta_v2_tokenizer() -> Any:
    from tokenizers import Regex, normalizers

    steps = [
        normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "),
        normalizers.NFC(),
        normalizers.Strip(left=False, right=True),
    ]
    tokenizer = _unigram(
        200, steps, ["[PAD]", "[CLS]", "[SEP]", "[UNK]"], "[UNK]", whitespace_split=False
    )
    tokenizer.add_special_tokens(["[MASK]"])  # the last id, as in DeBERTa-v3's vocabulary
    return _template(tokenizer, "[CLS]", "[SEP]")


def _xlm_roberta_tokenizer(byte_fallback: bool = False) -> Any:
    from tokenizers import normalizers

    # NFKC stands in for the SentencePiece model's precompiled (nmt_nfkc) character map.
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokenizer = _unigram(200, [normalizers.NFKC()], specials, "<unk>", byte_fallback=byte_fallback)
    tokenizer.add_special_tokens(["<mask>"])  # the last id, as in XLM-R's vocabulary
    return _template(tokenizer, "<s>", "</s>", double_sep=True)


def _albert_tokenizer() -> Any:
    from tokenizers import normalizers

    steps = [
        normalizers.Replace("``", '"'),
        normalizers.Replace("''", '"'),
        normalizers.NFKD(),
        normalizers.StripAccents(),
        normalizers.Lowercase(),
        normalizers.NFKC(),  # as for XLM-R
    ]
    specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    return _template(_unigram(200, steps, specials, "<unk>"), "[CLS]", "[SEP]")


def _mpnet_tokenizer() -> Any:
    # MPNet's vocabulary is BERT's between <s> <pad> </s> <unk> and <mask>; its unk is [UNK].
    tokenizer = _wordpiece(200, ["<s>", "<pad>", "</s>", "<unk>", "[UNK]"], "[UNK]")
    tokenizer.add_special_tokens(["<mask>"])
    return _template(tokenizer, "<s>", "</s>", double_sep=True)


def _modernbert_tokenizer() -> Any:
    from tokenizers import normalizers

    # OLMo's (GPT-NeoX-style) byte-level BPE, BERT's specials after its vocabulary.
    tokenizer = _byte_level_bpe(400, ["<|endoftext|>", "<|padding|>"], normalizer=normalizers.NFC())
    tokenizer.add_special_tokens(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
    return _template(tokenizer, "[CLS]", "[SEP]")


@dataclass(frozen=True)
class _TokenizerKind:
    build: Callable[[], Any]
    specials: str  # "cls sep pad unk mask"
    bos_eos: bool = False  # bos_token = cls, eos_token = sep
    token_types: bool = False  # token_type_ids is a model input


_WORDPIECE = _TokenizerKind(
    lambda: _wordpiece_tokenizer(200), "[CLS] [SEP] [PAD] [UNK] [MASK]", token_types=True
)
_XLM_ROBERTA = _TokenizerKind(_xlm_roberta_tokenizer, "<s> </s> <pad> <unk> <mask>", bos_eos=True)
_TOKENIZERS = {
    "roberta": _TokenizerKind(
        lambda: _bpe_tokenizer(400), "<s> </s> <pad> <unk> <mask>", bos_eos=True
    ),
    "deberta-v2": _TokenizerKind(
        _deberta_v2_tokenizer, "[CLS] [SEP] [PAD] [UNK] [MASK]", bos_eos=True
    ),
    "xlm-roberta": _XLM_ROBERTA,
    # Without CamemBERT's <s>NOTUSED-style placeholder pieces; with SentencePiece's byte
    # fallback (which CamemBERT's own tokenizer lacks), so that the suite serves byte pieces.
    "camembert": _TokenizerKind(
        lambda: _xlm_roberta_tokenizer(byte_fallback=True),
        "<s> </s> <pad> <unk> <mask>",
        bos_eos=True,
    ),
    "mpnet": _TokenizerKind(_mpnet_tokenizer, "<s> </s> <pad> [UNK] <mask>", bos_eos=True),
    "albert": _TokenizerKind(
        _albert_tokenizer, "[CLS] [SEP] <pad> <unk> [MASK]", bos_eos=True, token_types=True
    ),
    "modernbert": _TokenizerKind(_modernbert_tokenizer, "[CLS] [SEP] [PAD] [UNK] [MASK]"),
}


def make_tokenizer(model_type: str) -> Any:
    """A transformers fast tokenizer trained on ``CORPUS`` (WordPiece for a type not listed)."""
    from transformers import PreTrainedTokenizerFast

    kind = _TOKENIZERS.get(model_type, _WORDPIECE)
    cls, sep, pad, unk, mask = kind.specials.split()
    extra = {"bos_token": cls, "eos_token": sep} if kind.bos_eos else {}
    if kind.token_types:
        extra["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=kind.build(),
        cls_token=cls,
        sep_token=sep,
        pad_token=pad,
        unk_token=unk,
        mask_token=mask,
        **extra,
    )


_TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def _config(model_type: str, tokenizer: Any, num_labels: int) -> Any:
    from transformers import (
        AlbertConfig,
        BertConfig,
        CamembertConfig,
        DebertaV2Config,
        DistilBertConfig,
        ElectraConfig,
        ModernBertConfig,
        MPNetConfig,
        RobertaConfig,
        XLMRobertaConfig,
    )

    common = {
        "vocab_size": len(tokenizer),
        "num_labels": num_labels,
        "pad_token_id": tokenizer.pad_token_id,
    }
    roberta_family = {
        "roberta": RobertaConfig,
        "xlm-roberta": XLMRobertaConfig,
        "camembert": CamembertConfig,
    }
    ends = {"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id}
    if model_type == "bert":
        return BertConfig(**_TINY, max_position_embeddings=64, **common)
    if model_type in roberta_family:
        # Positions count from padding_idx + 1: two more than the longest input.
        return roberta_family[model_type](
            **_TINY, max_position_embeddings=66, type_vocab_size=1, **ends, **common
        )
    if model_type == "distilbert":
        return DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64, **common
        )
    if model_type == "electra":
        return ElectraConfig(embedding_size=16, **_TINY, max_position_embeddings=64, **common)
    if model_type == "deberta-v2":  # DeBERTa-v3's attention; no absolute positions, no types
        return DebertaV2Config(
            **_TINY,
            max_position_embeddings=64,
            relative_attention=True,
            position_buckets=16,
            max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            type_vocab_size=0,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            initializer_range=0.2,
            **ends,
            **common,
        )
    if model_type == "mpnet":  # positions as RoBERTa's
        return MPNetConfig(**_TINY, max_position_embeddings=66, **ends, **common)
    if model_type == "albert":
        return AlbertConfig(
            embedding_size=16, **_TINY, max_position_embeddings=64, **ends, **common
        )
    if model_type == "modernbert":  # global, sliding-window (16 tokens), global attention
        return ModernBertConfig(
            **{**_TINY, "num_hidden_layers": 3},
            max_position_embeddings=128,
            local_attention=16,
            global_attn_every_n_layers=2,
            initializer_range=0.2,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            **ends,
            **common,
        )
    raise ValueError(model_type)


ARCHITECTURES = (
    "bert",
    "roberta",
    "distilbert",
    "electra",
    "deberta-v2",
    "xlm-roberta",
    "camembert",
    "mpnet",
    "albert",
    "modernbert",
)


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
    config = _config(model_type, tokenizer, num_labels)
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
