"""ERASER faithfulness variants and AOPCs (runtime/explanation/faithfulness.py) on hand-built
encodings whose answers are written out here: which token ids each variant holds (delete and mask),
how many words each fraction takes, the seeded random ranking, and the AOPC of made-up
probabilities; then on a WordPiece tokenizer built here, where deleting a word's tokens must equal
tokenizing the text without the word."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from gradlight.runtime.execution.tokenization import EncodedText, TextEncoder
from gradlight.runtime.explanation.faithfulness import (
    FRACTIONS,
    FULL_TEXT,
    REMOVALS,
    FaithfulnessPlan,
    plan_variants,
    score,
)

CLS, SEP, MASK_ID = 101, 102, 103
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
TEXT = " ".join(WORDS)
WORD_IDS = list(range(11, 21))  # alpha: 11 ... kappa: 20
# Label 0: beta 0.9, iota 0.8, zeta 0.7, kappa 0.4, delta 0.3, eta 0.2, alpha 0.1, epsilon 0,
# theta -0.1, gamma -0.5. Label 1: all equal, so text order.
SCORES_0 = [0.1, 0.9, -0.5, 0.3, 0.0, 0.7, 0.2, -0.1, 0.8, 0.4]
SCORES_1 = [0.0] * 10


def encode(
    text: str,
    pieces: list[tuple[str, int, int, int]],
    *,
    truncated: bool = False,
    markers: tuple[int, ...] = (),
) -> EncodedText:
    """[CLS] + ``(token, id, start, end)`` pieces + [SEP]; pieces at ``markers`` (indices into
    ``pieces``) are entity markers (special)."""
    tokens = ["[CLS]"] + [token for token, *_ in pieces] + ["[SEP]"]
    flagged = [False] + [i in markers for i in range(len(pieces))] + [False]
    return EncodedText(
        ids=np.array([CLS] + [i for _, i, _, _ in pieces] + [SEP], dtype=np.int64),
        type_ids=np.zeros(len(tokens), dtype=np.int64),
        tokens=tuple(tokens),
        offsets=((0, 0), *((a, b) for *_, a, b in pieces), (0, 0)),
        special=(True, *flagged[1:-1], True),
        truncated=truncated,
        markers=tuple(flagged) if markers else (),
    )


def ten_words() -> EncodedText:
    pieces, start = [], 0
    for word, token_id in zip(WORDS, WORD_IDS, strict=True):
        pieces.append((word, token_id, start, start + len(word)))
        start += len(word) + 1
    return encode(TEXT, pieces)


def token_scores(word_scores: list[float]) -> np.ndarray:
    """Per token: 0 for [CLS] and [SEP], the word's score for its one token."""
    return np.array([0.0, *word_scores, 0.0])


def ids(*names: str) -> list[int]:
    """[CLS], the ids of the words ``names`` in text order, [SEP]."""
    return [CLS] + [WORD_IDS[WORDS.index(name)] for name in sorted(names, key=WORDS.index)] + [SEP]


def without(*names: str) -> list[int]:
    return ids(*(word for word in WORDS if word not in names))


def row_ids(plan: FaithfulnessPlan, row: int, full: EncodedText) -> list[int]:
    return (full if row == FULL_TEXT else plan.variants[row]).ids.tolist()


TOP5_LABEL0 = ("beta", "iota", "zeta", "kappa", "delta")


def test_delete_variants_hold_the_expected_ids():
    encoded = ten_words()
    plan = plan_variants(TEXT, encoded, np.stack([token_scores(SCORES_0), token_scores(SCORES_1)]))
    assert plan.words == 10 and plan.labels == 2
    assert plan.counts == (1, 1, 1, 2, 5)
    comp = [[row_ids(plan, r, encoded) for r in rows] for rows in plan.comprehensiveness_rows]
    suff = [[row_ids(plan, r, encoded) for r in rows] for rows in plan.sufficiency_rows]
    assert comp[0] == [
        without("beta"),
        without("beta"),
        without("beta"),
        without("beta", "iota"),
        without(*TOP5_LABEL0),
    ]
    assert comp[0][4] == [101, 11, 13, 15, 17, 18, 102]  # alpha gamma epsilon eta theta
    assert suff[0] == [
        ids("beta"),
        ids("beta"),
        ids("beta"),
        ids("beta", "iota"),
        ids(*TOP5_LABEL0),
    ]
    assert suff[0][4] == [101, 12, 14, 16, 19, 20, 102]  # kept in text order
    # Label 1: all ties, ranked in text order.
    assert comp[1][3] == without("alpha", "beta")
    assert suff[1][4] == [101, 11, 12, 13, 14, 15, 102]
    # The 1%, 5% and 10% variants are one row (one word each); every row differs.
    assert plan.comprehensiveness_rows[0, 0] == plan.comprehensiveness_rows[0, 2]
    assert len({tuple(v.ids.tolist()) for v in plan.variants}) == len(plan.variants)
    assert len(plan.variants) <= 2 * len(FRACTIONS) * (plan.labels + 1)


def test_delete_variants_slice_every_field_consistently():
    encoded = ten_words()
    encoded = EncodedText(
        ids=encoded.ids,
        type_ids=np.arange(12, dtype=np.int64) % 2,
        tokens=encoded.tokens,
        offsets=encoded.offsets,
        special=encoded.special,
        truncated=True,
    )
    plan = plan_variants(TEXT, encoded, token_scores(SCORES_0)[None])
    variant = plan.variants[plan.sufficiency_rows[0, 3]]  # beta and iota alone
    assert variant.ids.tolist() == [101, 12, 19, 102]
    assert variant.type_ids.tolist() == [0, 0, 1, 1]  # of positions 0, 2, 9, 11
    assert variant.tokens == ("[CLS]", "beta", "iota", "[SEP]")
    assert variant.offsets == ((0, 0), (6, 10), (46, 50), (0, 0))
    assert variant.special == (True, False, False, True)
    assert variant.truncated is True
    assert variant.ids.dtype == np.int64 and variant.type_ids.dtype == np.int64


def test_mask_keeps_the_length_and_masks_the_removed_words():
    encoded = ten_words()
    plan = plan_variants(TEXT, encoded, token_scores(SCORES_0)[None], removal="mask", mask_id=103)
    comp = plan.variants[plan.comprehensiveness_rows[0, 4]]
    #                        CLS  alpha beta gamma delta eps zeta eta theta iota kappa SEP
    assert comp.ids.tolist() == [101, 11, 103, 13, 103, 15, 103, 17, 18, 103, 103, 102]
    suff = plan.variants[plan.sufficiency_rows[0, 0]]
    assert suff.ids.tolist() == [101, 103, 12] + [103] * 8 + [102]
    for variant in plan.variants:
        assert len(variant) == len(encoded)
        assert variant.type_ids.tolist() == encoded.type_ids.tolist()
        assert variant.tokens == encoded.tokens and variant.offsets == encoded.offsets
    assert encoded.ids.tolist() == [101, *WORD_IDS, 102]  # the original is left alone


def test_fractions_take_ceil_of_the_words():
    def counts(n: int) -> tuple[int, ...]:
        text = " ".join(["w"] * n)
        encoded = encode(text, [("w", 11, 2 * i, 2 * i + 1) for i in range(n)])
        return plan_variants(text, encoded, np.zeros((1, n + 2))).counts

    assert counts(1) == (1, 1, 1, 1, 1)
    assert counts(3) == (1, 1, 1, 1, 2)
    assert counts(7) == (1, 1, 1, 2, 4)
    assert counts(10) == (1, 1, 1, 2, 5)
    assert counts(100) == (1, 5, 10, 20, 50)  # 0.05 * 100 and friends: no float extra word
    assert counts(101) == (2, 6, 11, 21, 51)


def test_one_word_text_removes_it_whole_and_keeps_the_specials():
    encoded = encode("hello", [("hello", 11, 0, 5)])
    plan = plan_variants("hello", encoded, np.array([[0.0, 1.0, 0.0]]))
    assert [v.ids.tolist() for v in plan.variants] == [[CLS, SEP]]
    assert plan.comprehensiveness_rows.tolist() == [[0] * 5]
    assert plan.sufficiency_rows.tolist() == [[FULL_TEXT] * 5]  # keeping every word: the text
    result = score(plan, np.array([0.8]), np.array([[0.3]]))
    assert result.comprehensiveness == pytest.approx([0.5])
    assert result.sufficiency == pytest.approx([0.0])


def test_subword_tokens_of_one_word_go_together():
    # "unaffable" is three pieces, each scoring below "cat", but their sum ranks it first.
    text = "unaffable cat"
    encoded = encode(
        text,
        [("un", 11, 0, 2), ("##aff", 12, 2, 5), ("##able", 13, 5, 9), ("cat", 14, 10, 13)],
    )
    plan = plan_variants(text, encoded, np.array([[0.0, 0.3, 0.3, 0.3, 0.5, 0.0]]))
    assert plan.words == 2 and plan.spans == ((0, 9), (10, 13))
    assert plan.variants[plan.comprehensiveness_rows[0, 0]].ids.tolist() == [CLS, 14, SEP]
    assert plan.variants[plan.sufficiency_rows[0, 0]].ids.tolist() == [CLS, 11, 12, 13, SEP]
    masked = plan_variants(
        text, encoded, np.array([[0.0, 0.3, 0.3, 0.3, 0.5, 0.0]]), removal="mask", mask_id=MASK_ID
    )
    comp = masked.variants[masked.comprehensiveness_rows[0, 0]]
    assert comp.ids.tolist() == [CLS, MASK_ID, MASK_ID, MASK_ID, 14, SEP]


def test_a_word_of_several_tokens_with_punctuation():
    # runtime/execution/words.py: "don't" is one word (four tokens here), "." a word of its own.
    text = "I don't know."
    encoded = encode(
        text,
        [
            ("i", 11, 0, 1),
            ("don", 12, 2, 5),
            ("'", 13, 5, 6),
            ("t", 14, 6, 7),
            ("know", 15, 8, 12),
            (".", 16, 12, 13),
        ],
    )
    # Word sums: I 0.2, don't 0.1 - 0.3 + 0.1 = -0.1, know 0.05, "." 0.6.
    scores = np.array([[9.0, 0.2, 0.1, -0.3, 0.1, 0.05, 0.6, 9.0]])  # specials' scores ignored
    plan = plan_variants(text, encoded, scores)
    assert plan.spans == ((0, 1), (2, 7), (8, 12), (12, 13))
    assert plan.order.tolist() == [[3, 0, 2, 1]]
    assert plan.counts == (1, 1, 1, 1, 2)
    comp_50 = plan.variants[plan.comprehensiveness_rows[0, 4]]
    assert comp_50.ids.tolist() == [CLS, 12, 13, 14, 15, SEP]
    suff_50 = plan.variants[plan.sufficiency_rows[0, 4]]
    assert suff_50.ids.tolist() == [CLS, 11, 16, SEP]


def test_entity_markers_always_stay():
    text = "the fever is gone"
    encoded = encode(
        text,
        [
            ("the", 11, 0, 3),
            ("[E]", 90, 4, 4),
            ("fever", 12, 4, 9),
            ("[/E]", 91, 9, 9),
            ("is", 13, 10, 12),
            ("gone", 14, 13, 17),
        ],
        markers=(1, 3),
    )
    scores = np.array([[0.0, 0.1, 5.0, 0.9, 5.0, 0.3, 0.2, 0.0]])  # markers' scores ignored
    plan = plan_variants(text, encoded, scores)
    assert plan.words == 4
    comp_50 = plan.variants[plan.comprehensiveness_rows[0, 4]]  # fever, is removed
    assert comp_50.ids.tolist() == [CLS, 11, 90, 91, 14, SEP]
    assert comp_50.markers == (False, False, True, True, False, False)
    suff_1 = plan.variants[plan.sufficiency_rows[0, 0]]  # fever alone
    assert suff_1.ids.tolist() == [CLS, 90, 12, 91, SEP]
    assert suff_1.special == (True, True, False, True, True)


def test_only_the_words_the_model_reads_are_ranked():
    # Truncated after "beta": "gamma" owns no token and is never ranked or removed.
    text = "alpha beta gamma"
    encoded = encode(text, [("alpha", 11, 0, 5), ("beta", 12, 6, 10)], truncated=True)
    plan = plan_variants(text, encoded, np.array([[0.0, 0.2, 0.1, 0.0]]))
    assert plan.words == 2 and plan.spans == ((0, 5), (6, 10))
    assert plan.counts == (1, 1, 1, 1, 1)


def test_score_gives_the_hand_computed_aopc():
    encoded = ten_words()
    seed = 7
    plan = plan_variants(
        TEXT, encoded, np.stack([token_scores(SCORES_0), token_scores(SCORES_1)]), seed=seed
    )
    # Made-up model: p_k = base_k + the weights of the words still present.
    weights = np.array(
        [
            [0.01, 0.09, 0.0, 0.03, 0.0, 0.07, 0.02, 0.0, 0.08, 0.04],  # sum 0.34
            [0.05, 0.01, 0.02, 0.0, 0.03, 0.0, 0.0, 0.1, 0.0, 0.0],  # sum 0.21
        ]
    )
    base = np.array([0.5, 0.2])

    def probabilities(variant_ids: np.ndarray) -> np.ndarray:
        present = [WORD_IDS.index(i) for i in variant_ids.tolist() if i in WORD_IDS]
        return base + weights[:, present].sum(axis=1)

    p_full = probabilities(encoded.ids)
    assert p_full == pytest.approx([0.84, 0.41])
    p_variants = np.array([probabilities(v.ids) for v in plan.variants])
    result = score(plan, p_full, p_variants)
    assert result.fractions == FRACTIONS and result.words == 10
    # Label 0, top words beta .09, iota .08, zeta .07, kappa .04, delta .03 (1, 1, 1, 2, 5):
    # comprehensiveness .09, .09, .09, .17, .31 -> .75 / 5; sufficiency .34 minus those.
    # Label 1, text order alpha .05, beta .01, gamma .02, delta 0, epsilon .03:
    # comprehensiveness .05, .05, .05, .06, .11 -> .32 / 5; sufficiency .21 minus those.
    assert result.comprehensiveness == pytest.approx([0.15, 0.064])
    assert result.sufficiency == pytest.approx([0.19, 0.146])
    # The random ranking, drawn here the same way, is one for both labels.
    permutation = np.random.default_rng(seed).permutation(10)
    removed = [weights[:, permutation[:count]].sum(axis=1) for count in (1, 1, 1, 2, 5)]
    expected_comprehensiveness = np.mean(removed, axis=0)
    assert result.random_comprehensiveness == pytest.approx(expected_comprehensiveness)
    assert result.random_sufficiency == pytest.approx(
        weights.sum(axis=1) - expected_comprehensiveness
    )


def test_score_reads_each_row_in_plan_order():
    # Arbitrary (not additive) probabilities per row: each variant's AOPC term is read from
    # the row that holds it.
    encoded = ten_words()
    plan = plan_variants(TEXT, encoded, token_scores(SCORES_0)[None])
    by_ids = {
        tuple(without("beta")): 0.5,
        tuple(without("beta", "iota")): 0.4,
        tuple(without(*TOP5_LABEL0)): 0.1,
        tuple(ids("beta")): 0.7,
        tuple(ids("beta", "iota")): 0.75,
        tuple(ids(*TOP5_LABEL0)): 0.85,
    }
    p_variants = np.array([[by_ids.get(tuple(v.ids.tolist()), 0.0)] for v in plan.variants])
    result = score(plan, np.array([0.9]), p_variants)
    assert result.comprehensiveness == pytest.approx([(0.4 * 3 + 0.5 + 0.8) / 5])
    assert result.sufficiency == pytest.approx([(0.2 * 3 + 0.15 + 0.05) / 5])


def test_random_ranking_is_reproducible_and_the_same_for_every_label():
    encoded = ten_words()
    two = np.stack([token_scores(SCORES_0), token_scores(SCORES_1)])
    a = plan_variants(TEXT, encoded, two, seed=3)
    b = plan_variants(TEXT, encoded, two, seed=3)
    one = plan_variants(TEXT, encoded, token_scores(SCORES_1)[None], seed=3)
    other = plan_variants(TEXT, encoded, two, seed=4)
    permutation = np.random.default_rng(3).permutation(10)
    assert a.random_order.tolist() == permutation.tolist() == one.random_order.tolist()
    assert other.random_order.tolist() != permutation.tolist()

    def random_rows(plan: FaithfulnessPlan) -> list[list[int]]:
        rows = [*plan.random_comprehensiveness_rows, *plan.random_sufficiency_rows]
        return [row_ids(plan, row, encoded) for row in rows]

    assert random_rows(a) == random_rows(b) == random_rows(one)
    removed = [WORDS[i] for i in permutation[:5]]
    assert random_rows(a)[4] == without(*removed)  # 50%: the first five drawn removed
    assert random_rows(a)[9] == ids(*removed)  # and kept alone


@pytest.mark.parametrize("removal", REMOVALS)
def test_a_text_without_words_has_no_variants_and_scores_zero(removal):
    for text, pieces in [("", []), ("   ", [("\u0120", 11, 0, 3)])]:
        encoded = encode(text, pieces)
        plan = plan_variants(
            text, encoded, np.ones((2, len(encoded))), removal=removal, mask_id=MASK_ID
        )
        assert plan.variants == () and plan.words == 0 and plan.counts == (0,) * 5
        result = score(plan, np.array([0.3, 0.7]), np.empty((0, 2)))
        assert result.words == 0
        for metric in (
            result.comprehensiveness,
            result.sufficiency,
            result.random_comprehensiveness,
            result.random_sufficiency,
        ):
            assert metric.tolist() == [0.0, 0.0]


def test_bad_inputs_raise():
    encoded = ten_words()
    good = token_scores(SCORES_0)[None]
    with pytest.raises(ValueError, match="delete, mask"):
        plan_variants(TEXT, encoded, good, removal="drop")
    with pytest.raises(ValueError, match="mask_id"):
        plan_variants(TEXT, encoded, good, removal="mask")
    with pytest.raises(ValueError, match=r"expected \[K, 12\]"):
        plan_variants(TEXT, encoded, token_scores(SCORES_0))  # [S], not [K, S]
    with pytest.raises(ValueError, match=r"expected \[K, 12\]"):
        plan_variants(TEXT, encoded, np.zeros((1, 11)))
    with pytest.raises(ValueError, match=r"expected \[K, 12\]"):
        plan_variants(TEXT, encoded, np.zeros((0, 12)))
    with pytest.raises(ValueError, match="not finite"):
        plan_variants(TEXT, encoded, np.full((1, 12), np.nan))
    with pytest.raises(ValueError, match="past the text's end"):
        plan_variants("alpha", encoded, good)
    plan = plan_variants(TEXT, encoded, good)
    rows = len(plan.variants)
    with pytest.raises(ValueError, match="p_full"):
        score(plan, np.array([0.5, 0.5]), np.zeros((rows, 1)))
    with pytest.raises(ValueError, match="p_variants"):
        score(plan, np.array([0.5]), np.zeros((rows + 1, 1)))
    with pytest.raises(ValueError, match="p_variants"):
        score(plan, np.array([0.5]), np.zeros(rows))


def test_deleting_a_words_tokens_equals_tokenizing_the_text_without_it(tmp_path):
    vocab = {
        token: i
        for i, token in enumerate(
            [
                *("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
                *("the", "un", "##aff", "##able", "cat", "sat", "on", "mat", "."),
            ]
        )
    }
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    encoder = TextEncoder(tmp_path / "tokenizer.json")
    text = "the unaffable cat sat on the mat."
    (encoded,) = encoder.encode([text], 64)
    assert encoded.tokens[2:5] == ("un", "##aff", "##able")
    # Word scores: "unaffable" 0.9 over its pieces, "mat" 0.5, "." 0.4, "cat" 0.2, the rest
    # lower.
    raw = np.array([[0.0, 0.1, 0.3, 0.3, 0.3, 0.2, 0.05, 0.0, 0.05, 0.5, 0.4, 0.0]])
    plan = plan_variants(text, encoded, raw)
    assert plan.words == 8 and plan.counts == (1, 1, 1, 2, 4)
    expected = {
        0: "the cat sat on the mat.",  # without "unaffable"
        3: "the cat sat on the.",  # without "unaffable", "mat"
        4: "the sat on the",  # without "unaffable", "mat", ".", "cat"
    }
    for f, without_text in expected.items():
        variant = plan.variants[plan.comprehensiveness_rows[0, f]]
        (reference,) = encoder.encode([without_text], 64)
        assert variant.ids.tolist() == reference.ids.tolist()
    sufficiency = plan.variants[plan.sufficiency_rows[0, 4]]
    (reference,) = encoder.encode(["unaffable cat mat."], 64)
    assert sufficiency.ids.tolist() == reference.ids.tolist()
    masked = plan_variants(text, encoded, raw, removal="mask", mask_id=vocab["[MASK]"])
    variant = masked.variants[masked.comprehensiveness_rows[0, 0]]
    assert variant.tokens == encoded.tokens
    assert variant.ids.tolist() == [2, 5, 4, 4, 4, 9, 10, 11, 5, 12, 13, 3]
