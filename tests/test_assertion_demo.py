"""The demo's clinical assertion classifier: the bundled data is what its generator writes and
its held-out split is really unseen; the trained model is accurate; and its explanations,
served by the real server, point at the cue words and at the sentence that carries them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from serving import ServerThread

from gradlight.bench.meaning import TOP_WORDS, evaluate
from gradlight.client import Client
from gradlight.demo import assertion_data, assertion_vocabulary
from gradlight.demo.run import ARTIFACT_DIR, MODEL_DIR
from gradlight.demo.training import TrainingOptions, read_report
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.explanation.sentences import split_sentences
from gradlight.runtime.serving.server import ServerSettings
from gradlight.runtime.settings import EngineSettings

OUTPUT = Path(os.environ.get("GRADLIGHT_TEST_OUTPUT", Path(__file__).parents[1] / "test-output"))
CUES = {
    label: {template[template.index("[") + 1 : template.index("]")].lower()
            for lab, template in (*assertion_vocabulary.TRAIN_TEMPLATES,
                                  *assertion_vocabulary.HELDOUT_TEMPLATES) if lab == label}
    for label in assertion_data.LABELS
}  # fmt: skip


def test_the_bundled_data_is_exactly_what_the_generator_writes(tmp_path):
    written = assertion_data.write(tmp_path)
    shipped = Path(str(assertion_data.__file__)).parent / "data" / "assertion"
    for split, path in written.items():
        assert path.read_bytes() == (shipped / f"{split}.jsonl").read_bytes(), split


def test_the_heldout_split_is_unseen_in_training():
    train, heldout = assertion_data.load("train"), assertion_data.load("heldout")
    assert len(train) == assertion_data.TRAIN_NOTES and len(heldout) == assertion_data.HELDOUT_NOTES
    assert not {n.template for n in train} & {n.template for n in heldout}
    train_text = "\n".join(note.text.lower() for note in train)
    for finding in assertion_vocabulary.HELDOUT_FINDINGS:
        assert finding not in train_text, finding
    for sentence in assertion_vocabulary.HELDOUT_NEUTRAL:
        assert sentence.lower() not in train_text, sentence
    heldout_text = "\n".join(note.text.lower() for note in heldout)
    for finding in assertion_vocabulary.TRAIN_FINDINGS:
        assert finding not in heldout_text, finding


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_every_note_is_well_formed(split):
    notes = assertion_data.load(split)
    counts = {label: sum(n.label == label for n in notes) for label in assertion_data.LABELS}
    assert max(counts.values()) - min(counts.values()) <= 1  # balanced
    for note in notes:
        spans = [(span.start, span.end) for span in split_sentences(note.text)]
        assert len(spans) == note.sentences, note.text  # the runtime splits it as generated
        assert tuple(note.assertion_sentence) in spans
        start, end = note.assertion_sentence
        assert start <= note.cue[0] < note.cue[1] <= end
        assert start <= note.finding[0] < note.finding[1] <= end
        assert note.cue_text.lower() in CUES[note.label]
        for cue_start, cue_end in note.more_cues:  # further assertions: same label, own sentence
            assert note.text[cue_start:cue_end].lower() in CUES[note.label]
            assert any(a <= cue_start < cue_end <= b for a, b in spans if (a, b) != (start, end))
    if split == "heldout":
        assert not any(note.more_cues for note in notes)
    else:
        assert 0.15 < sum(bool(note.more_cues) for note in notes) / len(notes) < 0.35


def test_training_options_are_checked():
    for bad in (
        {"epochs": 0},
        {"learning_rate": 0.0},
        {"trainable_layers": 7},
        {"explanation_weight": -1.0},
        {"explanation_temperature": 0.0},
        {"train_notes": 2},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainingOptions(**bad)


def test_the_trained_classifier_is_accurate_on_unseen_notes(minilm):
    model_dir, _ = minilm
    report = read_report(model_dir)
    assert report is not None
    assert report.heldout_notes == assertion_data.HELDOUT_NOTES
    assert report.heldout_accuracy >= 0.95, report.summary()
    assert min(report.heldout_accuracy_by_label.values()) >= 0.9, report.summary()


def test_explanations_point_at_the_cues(minilm):
    """Through the real server, on the 300 held-out notes, for the predicted label."""
    _, artifact = minilm
    engine = Engine(artifact, EngineSettings(provider="cpu"))
    with (
        ServerThread({"assertion": engine}, ServerSettings(port=0)) as server,
        Client(server.address, timeout=600) as client,
    ):
        report = evaluate(client, assertion_data.load("heldout"))
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "meaning.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(report.summary())
    assert report.notes == assertion_data.HELDOUT_NOTES
    assert report.accuracy >= 0.95, report.summary()
    # The sentence carrying the cue has the largest sentence attribution: target met.
    assert report.multi_sentence_notes > 150
    assert report.cue_sentence_first >= 0.90, report.summary()
    # The cue among the 3 highest-scoring words (of ~15): target met.
    assert TOP_WORDS == 3
    assert report.cue_in_top_words >= 0.90, report.summary()


def test_a_second_demo_run_reuses_the_model_and_the_artifact(minilm, tmp_path):
    model_dir, artifact = minilm
    workdir = tmp_path / "demo"
    workdir.mkdir()
    os.symlink(model_dir, workdir / MODEL_DIR)
    os.symlink(artifact, workdir / ARTIFACT_DIR)
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradlight.cli.main",
            "demo",
            "--no-serve",
            "--workdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "reusing the trained classifier" in done.stderr
    assert "reusing the artifact" in done.stderr
    assert "labels: affirmed, negated, uncertain" in done.stdout
    assert "validation against eager PyTorch: passed" in done.stdout
    print(f"second demo run: {time.monotonic() - started:.1f} s")
