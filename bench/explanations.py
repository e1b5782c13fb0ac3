"""Which explanation to believe: the attribution methods compared on the demo's held-out notes.

For each classifier (plainly fine-tuned MiniLM, and the demo's explanation-supervised one) and
each method, through ``gradlight serve`` in its own process (the product's own path), for the
label each note is predicted:

- **cue in top 3**: the cue phrase holds one of the 3 highest words (bench/meaning.py's rule);
- **cue sentence first** (notes of 2+ sentences): the sentence with the largest score holds the
  cue; a token method's sentence score is the sum of its tokens' raw scores, leave-one-sentence-
  out's is its own;
- **comprehensiveness / sufficiency** (ERASER AOPC, words deleted; random ranking in brackets),
  from the server's ``faithfulness`` option (runtime/explanation/faithfulness.py), seed 0 for every
  method (so each note's random ranking is the same for every method; GradientSHAP's draws too);
- **texts/s**: the same requests for the first ``--timed`` notes, without faithfulness, timed,
  ``--batch`` notes per request.

    python -m gradlight.bench.explanations --work DIR [--every K] [--timed N] [--threads T]

trains the two classifiers in ``DIR`` (or reuses them), exports them, and writes
``DIR/explanations.json`` and the markdown table of docs/explanations.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gradlight.bench.machine import cores_available, cpu_name
from gradlight.bench.meaning import TOP_WORDS, word_scores
from gradlight.bench.served import ServerProcess
from gradlight.client import Client
from gradlight.demo import assertion_data
from gradlight.demo.assertion_data import Note
from gradlight.runtime.explanation.sentences import split_sentences
from gradlight.v1 import gradlight_pb2 as pb

LEAVE_ONE_OUT = "leave_one_sentence_out"


@dataclass(frozen=True)
class Method:
    """A row of the table: its name and the request fields that ask for it."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> bool:
        return self.name != LEAVE_ONE_OUT


METHODS = (
    Method("input x gradient", {"method": "input_x_gradient"}),
    *(
        Method(
            f"integrated gradients, {steps} steps",
            {"method": "integrated_gradients", "steps": steps},
        )
        for steps in (8, 16, 32, 64)
    ),
    *(
        Method(
            f"integrated gradients, steps per text ({tolerance:.0%} tolerance)",
            {"method": "integrated_gradients", "completeness_tolerance": tolerance},
        )
        for tolerance in (0.05, 0.01)
    ),
    Method("GradientSHAP, 16 samples", {"method": "gradient_shap", "samples": 16}),
    Method(LEAVE_ONE_OUT),
)


@dataclass
class MethodScore:
    classifier: str
    method: str
    notes: int = 0
    cue_in_top_words: float | None = None
    cue_sentence_first: float | None = None
    comprehensiveness: float | None = None
    sufficiency: float | None = None
    random_comprehensiveness: float | None = None
    random_sufficiency: float | None = None
    mean_completeness_gap: float | None = None  # |gap|, path methods
    # |gap| / |f(x) - f(b)| per note (the predicted label's), path methods
    median_relative_gap: float | None = None
    mean_steps: float | None = None  # integrated gradients' steps per note, as used
    steps_used: dict[str, int] = field(default_factory=dict)  # how many notes got each
    tolerance_missed: int = 0  # notes whose gap stayed above the tolerance at the most steps
    texts_per_second: float = 0.0


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _requests(
    notes: Sequence[Note], predicted: Sequence[str], batch: int
) -> list[tuple[str, list[int]]]:
    """Note indices grouped by predicted label, cut in batches: ``(label, indices)``."""
    groups: list[tuple[str, list[int]]] = []
    for label in dict.fromkeys(predicted):
        mine = [i for i, p in enumerate(predicted) if p == label]
        groups += [(label, mine[i : i + batch]) for i in range(0, len(mine), batch)]
    return groups


def _request(method: Method, label: str, *, faithfulness: bool) -> dict[str, Any]:
    """``Client.attribute``'s arguments for ``method`` on the notes of one predicted label."""
    if not method.tokens:
        return {"labels": [label], "token_attributions": False, "sentence_attributions": True}
    return {
        "labels": [label],
        "raw_scores": True,
        "faithfulness": faithfulness,
        **({"seed": 0} if faithfulness or method.fields.get("method") == "gradient_shap" else {}),
        **method.fields,
    }


def _sentence_first(note: Note, result: pb.TextResult, method: Method) -> bool | None:
    """Whether the highest-scoring sentence holds a cue (None: a single sentence)."""
    if not method.tokens:
        sentences = [(s.start, s.end, s.scores[0]) for s in result.sentences]
    else:
        sentences = [
            (
                span.start,
                span.end,
                sum(t.raw_scores[0] for t in result.tokens if span.start <= t.start < span.end),
            )
            for span in split_sentences(note.text)
        ]
    if len(sentences) < 2:
        return None
    start, end, _ = max(sentences, key=lambda item: item[2])
    return any(start <= a < end for a, _ in note.cues)


def measure(
    client: Client,
    classifier: str,
    method: Method,
    notes: Sequence[Note],
    predicted: list[str],
    batch: int,
    timed_notes: int,
) -> MethodScore:
    score = MethodScore(classifier, method.name, notes=len(notes))
    timed = 0.0
    for label, indices in _requests(notes[:timed_notes], predicted[:timed_notes], batch):
        texts = [notes[i].text for i in indices]
        started = time.perf_counter()
        client.attribute(texts, **_request(method, label, faithfulness=False))
        timed += time.perf_counter() - started
    score.texts_per_second = round(min(timed_notes, len(notes)) / timed, 2)
    groups = _requests(notes, predicted, batch)
    hits, firsts, gaps, relative, steps = [], [], [], [], []
    faith: dict[str, list[float]] = {}
    for label, indices in groups:
        texts = [notes[i].text for i in indices]
        response = client.attribute(texts, **_request(method, label, faithfulness=method.tokens))
        for i, result in zip(indices, response.results, strict=True):
            note = notes[i]
            first = _sentence_first(note, result, method)
            if first is not None:
                firsts.append(float(first))
            if not method.tokens:
                continue
            top = sorted(word_scores(result, 0), key=lambda item: item[2], reverse=True)
            hits.append(
                float(any(s < b and e > a for s, e, _ in top[:TOP_WORDS] for a, b in note.cues))
            )
            gaps += [abs(gap) for gap in result.completeness_gaps]
            if result.completeness_gaps:
                relative.append(_relative_gap(result))
                steps.append(result.steps)
                score.tolerance_missed += int(result.tolerance_missed)
            found = result.faithfulness
            for name in (
                "comprehensiveness",
                "sufficiency",
                "random_comprehensiveness",
                "random_sufficiency",
            ):
                faith.setdefault(name, []).append(getattr(found, name)[0])
    score.cue_in_top_words = _mean(hits)
    score.cue_sentence_first = _mean(firsts)
    score.mean_completeness_gap = _mean(gaps)
    if relative:
        score.median_relative_gap = round(float(statistics.median(relative)), 5)
        score.mean_steps = _mean(steps)
        score.steps_used = {str(k): steps.count(k) for k in sorted(set(steps))}
    for name, values in faith.items():
        setattr(score, name, _mean(values))
    return score


def _relative_gap(result: pb.TextResult) -> float:
    """|gap| / |f(x) - f(b)| of the one label asked (f(x) - f(b): the raw scores' sum less the
    gap)."""
    gap = result.completeness_gaps[0]
    change = sum(token.raw_scores[0] for token in result.tokens) - gap
    return abs(gap) / max(abs(change), 1e-12)


def _predicted(client: Client, notes: Sequence[Note], batch: int) -> list[str]:
    labels: list[str] = []
    for first in range(0, len(notes), batch):
        response = client.predict([note.text for note in notes[first : first + batch]])
        labels += [result.predicted_label for result in response.results]
    return labels


def _prepare(work: Path, name: str, explanation_weight: float, say: Callable[[str], None]) -> Path:
    """Train (unless done) and export (unless done) one classifier; its artifact."""
    from gradlight.artifact.errors import ArtifactError
    from gradlight.artifact.manifest import load_manifest
    from gradlight.demo.training import TrainingOptions, read_report, train_assertion_classifier
    from gradlight.export.pipeline import export_model

    model_dir, artifact = work / name, work / f"{name}-artifact"
    if read_report(model_dir) is None:
        say(f"training the {name} classifier in {model_dir}")
        train_assertion_classifier(
            model_dir, TrainingOptions(explanation_weight=explanation_weight), printer=say
        )
    try:
        load_manifest(artifact)
    except ArtifactError:
        say(f"exporting {model_dir} to {artifact}")
        export_model(model_dir, artifact, printer=say)
    return artifact


CLASSIFIERS = (("plain", 0.0, "plain fine-tuning"), ("supervised", 1.0, "explanation supervision"))


def run(
    work: Path,
    notes: Sequence[Note],
    threads: int,
    batch: int,
    timed_notes: int,
    classifiers: Sequence[str] = (),
    methods: Sequence[Method] = METHODS,
) -> dict[str, Any]:
    """Every method of ``methods`` on every classifier named in ``classifiers`` (empty: all)."""
    scores: list[MethodScore] = []
    for name, weight, title in CLASSIFIERS:
        if classifiers and name not in classifiers:
            continue
        artifact = _prepare(work, name, weight, print)
        server = ServerProcess.for_bench(artifact, "cpu", threads)
        with server, Client(server.address, timeout=3600) as client:
            predicted = _predicted(client, notes, batch)
            accuracy = sum(p == n.label for p, n in zip(predicted, notes, strict=True))
            print(f"{title}: accuracy {accuracy / len(notes):.3f} on {len(notes)} notes")
            for method in methods:
                score = measure(client, title, method, notes, predicted, batch, timed_notes)
                print(json.dumps(asdict(score)))
                scores.append(score)
    return {
        "machine": {"cpu": cpu_name(), "cores": cores_available(), "threads": threads},
        "notes": len(notes),
        "timed_notes": min(timed_notes, len(notes)),
        "batch": batch,
        "scores": [asdict(score) for score in scores],
    }


def table(report: dict[str, Any]) -> str:
    def shown(value: float | None, percent: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value:.1%}" if percent else f"{value:.3f}"

    lines = [
        "| classifier | method | cue in top 3 | cue sentence first | comprehensiveness "
        "(random) | sufficiency (random) | mean abs completeness gap | median relative gap | "
        "steps (mean) | texts/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["scores"]:
        comprehensiveness = (
            f"{shown(s['comprehensiveness'])} ({shown(s['random_comprehensiveness'])})"
            if s["comprehensiveness"] is not None
            else "-"
        )
        sufficiency = (
            f"{shown(s['sufficiency'])} ({shown(s['random_sufficiency'])})"
            if s["sufficiency"] is not None
            else "-"
        )
        lines.append(
            f"| {s['classifier']} | {s['method']} | {shown(s['cue_in_top_words'], True)} | "
            f"{shown(s['cue_sentence_first'], True)} | {comprehensiveness} | {sufficiency} | "
            f"{shown(s['mean_completeness_gap'])} | {_percent(s.get('median_relative_gap'))} | "
            f"{_steps(s)} | {s['texts_per_second']:.1f} |"
        )
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _steps(score: dict[str, Any]) -> str:
    """The mean steps, and (chosen per text) how many notes got each and missed."""
    if score.get("mean_steps") is None:
        return "-"
    used = score.get("steps_used") or {}
    if len(used) <= 1:
        return f"{score['mean_steps']:g}"
    spread = ", ".join(f"{k}: {n}" for k, n in used.items())
    return f"{score['mean_steps']:.1f} ({spread}; missed {score.get('tolerance_missed', 0)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="models, artifacts, results")
    parser.add_argument(
        "--every", type=int, default=1, help="every K-th held-out note (1: all 300)"
    )
    parser.add_argument("--timed", type=int, default=48, help="notes timed for texts/s")
    parser.add_argument("--threads", type=int, default=cores_available())
    parser.add_argument("--batch", type=int, default=16, help="notes per request")
    parser.add_argument(
        "--classifiers",
        nargs="+",
        choices=[name for name, _, _ in CLASSIFIERS],
        default=[],
        help="(default: all)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=[method.name for method in METHODS],
        default=[],
        metavar="METHOD",
        help="rows of the table, by name (default: all)",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    notes = assertion_data.load("heldout")
    notes = notes[:: args.every]
    methods = [m for m in METHODS if not args.methods or m.name in args.methods]
    report = run(args.work, notes, args.threads, args.batch, args.timed, args.classifiers, methods)
    (args.work / "explanations.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))


if __name__ == "__main__":
    main()
