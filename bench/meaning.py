"""Do the explanations mean something? A check on the held-out assertion notes, through a
running server (the product's own path: tokenization, batching, the ONNX graphs, scoring).

For each note, with the model's predicted label:

- **cue in the top 3 words**: the note's words (runtime/execution/words.py's) are scored as in the
  visualizer's word view (each token's raw score added to the word at or after its start); the 3
  highest-scoring words that hold a letter or digit (special tokens and punctuation are not
  word positions) include a word of the note's cue phrase ("denies", "no", "cannot rule out",
  ...; a training note with several assertions: of any of them).
- **cue sentence first** (notes of 2 or more sentences): the sentence holding the cue (any
  cue) has the largest leave-one-out score, p(label | note) - p(label | note without the sentence).

    python -m gradlight.bench.meaning --server 127.0.0.1:50051 [--model NAME]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from gradlight.client import Client
from gradlight.demo import assertion_data
from gradlight.demo.assertion_data import Note
from gradlight.runtime.execution.words import has_letter_or_digit, token_words, words
from gradlight.v1 import gradlight_pb2 as pb

TOP_WORDS = 3


@dataclass(frozen=True)
class NoteVerdict:
    id: str
    label: str
    predicted: str
    cue: str
    top_words: tuple[str, ...]
    cue_in_top_words: bool
    cue_sentence_first: bool | None  # None: a single sentence


@dataclass
class MeaningReport:
    notes: int = 0
    accuracy: float = 0.0
    cue_in_top_words: float = 0.0
    multi_sentence_notes: int = 0
    cue_sentence_first: float = 0.0
    by_label: dict[str, dict[str, float]] = field(default_factory=dict)
    misses: list[NoteVerdict] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.notes} held-out notes: accuracy {self.accuracy:.3f}; cue among the top "
            f"{TOP_WORDS} words for the predicted label in {self.cue_in_top_words:.1%}; cue "
            f"sentence with the largest sentence attribution in {self.cue_sentence_first:.1%} "
            f"of {self.multi_sentence_notes} multi-sentence notes"
        )


def word_scores(result: pb.TextResult, column: int) -> list[tuple[int, int, float]]:
    """``(start, end, score)`` per word of the text that holds a letter or digit: its tokens'
    raw scores summed (runtime/execution/words.py's words and ``token_words``, as the visualizer's
    word view and the bulk evidence)."""
    spans = words(result.text)
    tokens = [token for token in result.tokens if not token.special]
    totals = [0.0] * len(spans)
    for token, owner in zip(tokens, token_words(spans, [t.start for t in tokens]), strict=True):
        if owner is not None:
            totals[owner] += token.raw_scores[column]
    return [
        (start, end, total)
        for (start, end), total in zip(spans, totals, strict=True)
        if has_letter_or_digit(result.text[start:end])
    ]


def judge(note: Note, result: pb.TextResult) -> NoteVerdict:
    column = list(result.labels).index(result.predicted_label)
    words = sorted(word_scores(result, column), key=lambda item: item[2], reverse=True)
    top = words[:TOP_WORDS]
    hit = any(start < b and end > a for start, end, _ in top for a, b in note.cues)
    first = None
    if len(result.sentences) > 1:
        best = max(result.sentences, key=lambda sentence: sentence.scores[column])
        first = any(best.start <= a < best.end for a, _ in note.cues)
    return NoteVerdict(
        id=note.id,
        label=note.label,
        predicted=result.predicted_label,
        cue=note.cue_text,
        top_words=tuple(note.text[start:end] for start, end, _ in top),
        cue_in_top_words=hit,
        cue_sentence_first=first,
    )


def evaluate(
    client: Client, notes: Sequence[Note], *, model: str = "", batch: int = 32
) -> MeaningReport:
    verdicts: list[NoteVerdict] = []
    for first in range(0, len(notes), batch):
        chunk = notes[first : first + batch]
        response = client.attribute(
            [note.text for note in chunk],
            model=model,
            sentence_attributions=True,
            raw_scores=True,
        )
        verdicts.extend(
            judge(note, result) for note, result in zip(chunk, response.results, strict=True)
        )
    return _report(verdicts)


def _report(verdicts: list[NoteVerdict]) -> MeaningReport:
    def share(items: list[bool]) -> float:
        return round(sum(items) / len(items), 4) if items else float("nan")

    multi = [v for v in verdicts if v.cue_sentence_first is not None]
    report = MeaningReport(
        notes=len(verdicts),
        accuracy=share([v.label == v.predicted for v in verdicts]),
        cue_in_top_words=share([v.cue_in_top_words for v in verdicts]),
        multi_sentence_notes=len(multi),
        cue_sentence_first=share([bool(v.cue_sentence_first) for v in multi]),
        misses=[v for v in verdicts if not v.cue_in_top_words or v.cue_sentence_first is False],
    )
    for label in Counter(v.label for v in verdicts):
        mine = [v for v in verdicts if v.label == label]
        mine_multi = [v for v in mine if v.cue_sentence_first is not None]
        report.by_label[label] = {
            "notes": len(mine),
            "accuracy": share([v.label == v.predicted for v in mine]),
            "cue_in_top_words": share([v.cue_in_top_words for v in mine]),
            "cue_sentence_first": share([bool(v.cue_sentence_first) for v in mine_multi]),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--model", default="")
    parser.add_argument("--split", default="heldout", choices=("heldout", "train"))
    args = parser.parse_args()
    with Client(args.server, timeout=600) as client:
        report = evaluate(client, assertion_data.load(args.split), model=args.model)
    print(report.summary())
    print(json.dumps({k: v for k, v in asdict(report).items() if k != "misses"}, indent=2))
    for miss in report.misses[:20]:
        print(f"  miss {miss.id} ({miss.label}, cue {miss.cue!r}): top words {miss.top_words}")


if __name__ == "__main__":
    main()
