"""``gradlight explain`` output: bulk JSONL through the real engine (in process or behind a
real server), each output format checked against the tool's documented fields, bad lines
reported without stopping, evidence options, bad options refused before any line, entity spans,
no torch needed. Stopping and resuming: tests/test_explain_resume.py."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from bulk_formats import assert_same_records, check_label_studio, check_prodigy, html_text
from explain_runs import BAD, GOOD, explain, read_records, write_input

from gradlight.bulk.backends import artifact_revision
from gradlight.bulk.evidence import words


def _mixed_lines():
    """Good lines with bad ones and a blank one between them; (lines, good line numbers,
    bad line numbers with their reason)."""
    lines, good, bad = [], [], {}
    bad_lines = iter(BAD.items())
    for record in GOOD:
        lines.append(json.dumps(record, ensure_ascii=False))
        good.append(len(lines))
        raw, reason = next(bad_lines)
        lines.append(raw)
        bad[len(lines)] = reason
    lines.append("")  # blank: skipped
    for raw, reason in bad_lines:
        lines.append(raw)
        bad[len(lines)] = reason
    lines.append(json.dumps({"id": "last", "text": "No fever."}))
    good.append(len(lines))
    return lines, good, bad


@pytest.fixture(scope="module")
def mixed_input(tmp_path_factory):
    lines, good, bad = _mixed_lines()
    path = write_input(tmp_path_factory.mktemp("explain") / "in.jsonl", lines)
    return path, good, bad


def test_gradlight_format_reports_bad_lines_and_keeps_going(mixed_input, exported, tiny_client):
    source, good, bad = mixed_input
    out = source.with_name("out.jsonl")
    result = explain(source, out, "--artifact", exported("bert"), "--restart")
    assert result.returncode == 3  # finished, with bad lines
    records = read_records(out)
    assert [record["line"] for record in records] == good
    errors = read_records(source.with_name("out.jsonl.errors.jsonl"))
    assert [error["line"] for error in errors] == list(bad)
    for error in errors:
        assert bad[error["line"]] in error["error"]
        assert f"line {error['line']}: " in result.stderr
    assert f"explained {len(good)} lines, {len(bad)} bad" in result.stdout
    labels = next(m.labels for m in tiny_client.list_models().models if m.name == "bert")
    for record in records:
        text = record["text"]
        answers = record.get("entities", [record])
        for answer in answers:
            assert answer["label"] in labels and set(answer["probabilities"]) == set(labels)
            assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
            assert list(answer["evidence"]) == list(labels)  # all labels by default
            for found in answer["evidence"].values():
                starts = [e["start"] for e in found]
                assert starts == sorted(starts)
                for e in found:
                    assert text[e["start"] : e["end"]] == e["text"]
                    assert (e["start"], e["end"]) in words(text)  # whole words
                    assert -1.0 <= e["score"] <= 1.0 and e["score"] != 0
    entity_record = next(record for record in records if record.get("id") == "entities")
    first, second = entity_record["entities"]
    assert (first["start"], first["end"], first["text"], first["span_label"]) == (
        23,
        33,
        "chest pain",
        "P",
    )
    assert second["text"] == "shortness of breath" and "span_label" not in second
    assert "label" not in entity_record  # the text itself is not classified


def test_token_evidence_is_the_served_raw_score_normalized_over_the_text(
    mixed_input, exported, tiny_client
):
    """Per token, the evidence is the served raw score over the largest |raw| of the text's
    tokens (special tokens left out; WordPiece: no token shares a character with another)."""
    source, _, _ = mixed_input
    out = source.with_name("tokens.jsonl")
    explain(source, out, "--artifact", exported("bert"), "--unit", "token", "--restart")
    records = [record for record in read_records(out) if "entities" not in record]
    served = tiny_client.attribute(
        [record["text"] for record in records], model="bert", raw_scores=True
    )
    for record, result in zip(records, served.results, strict=True):
        tokens = [t for t in result.tokens if not t.special]
        for k, label in enumerate(result.labels):
            peak = max(abs(t.raw_scores[k]) for t in tokens)
            expected = {
                (t.start, t.end): t.raw_scores[k] / peak
                for t in tokens
                if abs(t.raw_scores[k] / peak) >= 5e-5
            }
            got = {(e["start"], e["end"]): e["score"] for e in record["evidence"][label]}
            assert got.keys() == expected.keys()
            for span, score in got.items():
                assert score == pytest.approx(expected[span], abs=1e-4)


def test_top_k_min_score_and_labels(mixed_input, exported):
    source, _, _ = mixed_input
    full, top = source.with_name("full.jsonl"), source.with_name("top.jsonl")
    explain(source, full, "--artifact", exported("bert"), "--restart")
    explain(
        source, top, "--artifact", exported("bert"), "--restart",
        "--top-k", "3", "--min-score", "0.2", "--labels", "predicted",
    )  # fmt: skip
    for everything, record in zip(read_records(full), read_records(top), strict=True):
        answers = record.get("entities", [record])
        for all_of_it, answer in zip(
            everything.get("entities", [everything]), answers, strict=True
        ):
            assert list(answer["evidence"]) == answer["labels"]  # the predicted label only
            for label, found in answer["evidence"].items():
                strong = [e for e in all_of_it["evidence"][label] if abs(e["score"]) >= 0.2]
                strongest = sorted(strong, key=lambda e: -abs(e["score"]))[:3]
                assert found == sorted(strongest, key=lambda e: e["start"])


def test_prodigy_tasks_follow_the_documented_format(mixed_input, exported, tiny_client):
    source, good, _ = mixed_input
    out = source.with_name("prodigy.jsonl")
    explain(source, out, "--artifact", exported("bert"), "--format", "prodigy", "--restart")
    labels = next(m.labels for m in tiny_client.list_models().models if m.name == "bert")
    tasks = read_records(out)
    assert len(tasks) == len(good)
    for task, line in zip(tasks, good, strict=True):
        check_prodigy(task, list(labels))
        assert task["meta"]["line"] == line
        _, paragraphs = html_text(task["html"])
        if task["meta"].get("id") == "entities":
            assert [(s["start"], s["end"]) for s in task["spans"]] == [(23, 33), (57, 76)]
            assert all(s["label"] in labels for s in task["spans"])
            assert "<u " in task["html"]  # the entity is underlined in its window
        else:
            assert paragraphs == [task["text"]]  # the whole text, evidence marked
            assert task["accept"] == [task["meta"]["label"]]
            for span in task["spans"]:
                assert span["label"] == task["meta"]["label"]  # the predicted label's
                red, blue = int(span["color"][1:3], 16), int(span["color"][5:7], 16)
                if span["score"] > 0:  # blue toward the label, deeper for a larger score
                    assert blue > red and red <= round(255 - 222 * span["score"]) + 1
                else:  # orange away from it
                    assert red > blue and blue <= round(255 - 254 * -span["score"]) + 1


def test_label_studio_tasks_fit_their_labeling_config(mixed_input, exported):
    source, good, _ = mixed_input
    out = source.with_name("ls.jsonl")
    explain(source, out, "--artifact", exported("bert"), "--format", "label-studio", "--restart")
    config = source.with_name("ls.jsonl.label-config.xml").read_text()
    tasks = read_records(out)
    assert len(tasks) == len(good)
    evidence = 0
    for task in tasks:
        check_label_studio(task, config)
        regions = task["predictions"][0]["result"]
        kinds = {region["from_name"] for region in regions}
        assert ("entity" in kinds) == (task["data"].get("id") == "entities")
        assert ("label" in kinds) == (task["data"].get("id") != "entities")
        evidence += sum(region["from_name"] == "evidence" for region in regions)
        assert all(region["score"] > 0 for region in regions)  # evidence toward a label
    assert evidence > 0


def test_the_checks_catch_broken_tasks(mixed_input, exported):
    """The format checks above fail on what the tools would refuse."""
    source, _, _ = mixed_input
    config = source.with_name("ls.jsonl.label-config.xml").read_text()
    task = read_records(source.with_name("ls.jsonl"))[0]
    region = next(r for r in task["predictions"][0]["result"] if r["type"] == "labels")
    for broken in ({"labels": ["nope"]}, {"end": region["value"]["start"]}, {"text": "x"}):
        damaged = json.loads(json.dumps(task))
        target = next(r for r in damaged["predictions"][0]["result"] if r["id"] == region["id"])
        target["value"].update(broken)
        with pytest.raises(AssertionError):
            check_label_studio(damaged, config)
    prodigy = read_records(source.with_name("prodigy.jsonl"))[0]
    for damage in ({"spans": [{"start": 0, "end": 2}]}, {"accept": ["nope"]}, {"html": "<b>x"}):
        with pytest.raises(Exception):  # noqa: B017, PT011 (schema or assertion)
            check_prodigy({**prodigy, **damage}, [o["id"] for o in prodigy["options"]])


def test_the_server_backend_writes_the_same_output(mixed_input, exported, tiny_server):
    source, _, _ = mixed_input
    local, remote = source.with_name("local.jsonl"), source.with_name("remote.jsonl")
    explain(source, local, "--artifact", exported("bert"), "--sentences", "--restart")
    address = tiny_server.address
    explain(source, remote, "--server", address, "--model", "bert", "--sentences", "--restart")
    assert_same_records(read_records(remote), read_records(local))
    assert "sentences" in read_records(local)[0]
    failed = explain(
        source, remote, "--server", address, "--model", "nope", "--restart", check=False
    )
    assert failed.returncode == 1 and "does not serve 'nope'" in failed.stderr


def test_bad_options_are_refused_before_any_line(mixed_input, exported):
    source, _, _ = mixed_input
    out = source.with_name("refused.jsonl")
    explain(source, out, "--artifact", exported("bert"), "--restart")
    finished = out.read_bytes()
    for args, message in [
        (("--labels", "nope"), "'nope' not among the model's labels"),
        (("--labels", "label_0,label_0"), "--labels names a label twice"),
        (("--max-length", "100000"), "--max-length is 100000"),
        (("--context-chars", "-1"), "--context-chars: is -1"),
        (("--markers", "<" * 101, "x"), "--markers: has 101 characters"),
        (("--top-k", "0"), "--top-k is 0"),
        (("--steps", "8"), "--steps is read only with --method integrated_gradients"),
        (("--removal", "mask"), "--removal is read only with --faithfulness"),
        (("--method", "gradient_shap", "--samples", "600"), "--samples: is 600"),
    ]:
        result = explain(
            source, out, "--artifact", exported("bert"), "--restart", *args, check=False
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
    assert out.read_bytes() == finished  # --restart discards nothing until the options pass
    # What only the model can refuse, it refuses for every line alike: the job stops (not
    # every line reported bad) and can be run again with other options.
    result = explain(
        source, out, "--artifact", exported("bert"), "--restart", "--max-length", "2", check=False
    )
    assert result.returncode == 1 and "max_length: is 2" in result.stderr
    assert "line " not in result.stderr


def test_entity_offsets_map_back_with_markers_as_the_model_was_trained(tmp_path, exported):
    text = "Meds: aspirin 81 mg daily (stopped). Warfarin continued; heparin held overnight."
    spans = [
        {"start": text.index(w), "end": text.index(w) + len(w)} for w in ("aspirin", "heparin")
    ]
    source = write_input(tmp_path / "in.jsonl", [json.dumps({"text": text, "spans": spans})])
    out = tmp_path / "out.jsonl"
    explain(
        source, out, "--artifact", exported("roberta"), "--unit", "token",
        "--markers", "[E]", "[/E]", "--context-chars", "20", "--sentences",
    )  # fmt: skip
    (record,) = read_records(out)
    for entity, span in zip(record["entities"], spans, strict=True):
        low, high = entity["context"]
        assert low <= span["start"] < span["end"] <= high
        assert span["start"] - low <= 20 and high - span["end"] <= 20
        for found in entity["evidence"].values():
            for e in found:
                assert low <= e["start"] < e["end"] <= high
                assert text[e["start"] : e["end"]] == e["text"]
        for sentence in entity["sentences"]:
            assert text[sentence["start"] : sentence["end"]] == sentence["text"]
            assert low <= sentence["start"] and sentence["end"] <= high
    scores = [np.array(list(e["probabilities"].values())) for e in record["entities"]]
    assert not np.allclose(scores[0], scores[1])  # each span read in its own window


def test_the_bulk_job_does_not_import_torch(mixed_input, exported):
    """Like serving, ``gradlight explain --artifact`` runs without torch installed."""
    source, good, _ = mixed_input
    out = source.with_name("torchless.jsonl")
    script = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "from gradlight.cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        "assert 'transformers' not in sys.modules\n"
        "sys.exit(code)\n"
    )
    args = ["explain", source, out, "--artifact", exported("bert"), "--no-progress"]
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True
    )
    assert result.returncode == 3, result.stderr
    assert len(read_records(out)) == len(good)


def _bert_labels(tiny_client):
    return list(next(m.labels for m in tiny_client.list_models().models if m.name == "bert"))


def test_integrated_gradients_with_faithfulness_in_every_record(tmp_path, exported, tiny_client):
    """The method flags reach every request: each answer (a line's, a span's) names its method
    and has a completeness gap and faithfulness figures per label, and the one seed the job
    picked for the faithfulness floor's random ranking."""
    lines = [json.dumps(record, ensure_ascii=False) for record in (GOOD[0], GOOD[2], GOOD[3])]
    source = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    result = explain(
        source, out, "--artifact", exported("bert"),
        "--method", "integrated_gradients", "--steps", "8", "--faithfulness",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    labels = _bert_labels(tiny_client)
    records = read_records(out)
    answers = [answer for record in records for answer in record.get("entities", [record])]
    assert len(answers) == 4  # two lines, and a line with two spans
    for answer in answers:
        assert answer["method"] == "integrated_gradients"
        assert list(answer["completeness_gaps"]) == labels
        assert (answer["steps"], answer["tolerance_missed"]) == (8, False)
        found = answer["faithfulness"]
        assert found["fractions"] == [0.01, 0.05, 0.1, 0.2, 0.5] and found["words"] > 0
        for key in ("comprehensiveness", "sufficiency", "random_comprehensiveness"):
            assert list(found[key]) == labels
            assert all(-1.0 <= value <= 1.0 for value in found[key].values())
        assert list(found["random_sufficiency"]) == labels
    (seed,) = {answer["seed"] for answer in answers}
    assert f"(seed {seed})" in result.stdout
    # The same figures as the client asking the server with the same options.
    served = tiny_client.attribute(
        [records[0]["text"]], model="bert", method="integrated_gradients", steps=8,
        faithfulness=True, seed=seed,
    ).results[0]  # fmt: skip
    assert served.method == "integrated_gradients" and served.seed == seed
    gaps = dict(zip(labels, served.completeness_gaps, strict=True))
    assert records[0]["completeness_gaps"] == pytest.approx(gaps, abs=1e-3)
    served_floor = dict(zip(labels, served.faithfulness.random_comprehensiveness, strict=True))
    assert records[0]["faithfulness"]["random_comprehensiveness"] == pytest.approx(
        served_floor, abs=1e-3
    )


def test_the_annotation_formats_name_the_method(tmp_path, exported):
    """Prodigy's ``meta`` holds the method, its samples (``steps``) and the seed; Label
    Studio's ``model_version`` names the model, its artifact's revision and the method, as the
    live backend's; both stay valid tasks."""
    lines = [json.dumps(record, ensure_ascii=False) for record in (GOOD[0], GOOD[3])]
    source = write_input(tmp_path / "in.jsonl", lines)
    method = ("--method", "gradient_shap", "--samples", "4", "--seed", "11")
    prodigy, studio = tmp_path / "prodigy.jsonl", tmp_path / "ls.jsonl"
    explain(source, prodigy, "--artifact", exported("bert"), "--format", "prodigy", *method)
    for task in read_records(prodigy):
        check_prodigy(task, [option["id"] for option in task["options"]])
        assert (task["meta"]["method"], task["meta"]["seed"]) == ("gradient_shap", 11)
        assert task["meta"]["steps"] == 4 and "tolerance_missed" not in task["meta"]
    explain(source, studio, "--artifact", exported("bert"), "--format", "label-studio", *method)
    config = tmp_path.joinpath("ls.jsonl.label-config.xml").read_text()
    for task in read_records(studio):
        check_label_studio(task, config)
        revision = artifact_revision(exported("bert"))
        assert task["predictions"][0]["model_version"] == f"bert@{revision} (gradient_shap)"
