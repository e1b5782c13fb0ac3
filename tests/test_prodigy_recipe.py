"""The Prodigy recipe ``gradlight.explain`` (bulk/prodigy_recipe.py) against a real server,
without Prodigy: its components, its tasks checked against the Prodigy task schema and equal
to what ``gradlight explain --format prodigy`` writes for the same lines, bad lines (the
source's and the server's refusals) skipped without stopping the stream."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from bulk_formats import assert_same_records, check_prodigy
from explain_runs import explain, read_records
from serving import FaultyEngine, ServerThread, poisoning

from gradlight.bulk import prodigy_recipe
from gradlight.bulk.backends import BackendError
from gradlight.bulk.formats import shade
from gradlight.bulk.prodigy_recipe import explain_recipe
from gradlight.client import Client

NOTE = "The patient denied any chest pain today. She reported no shortness of breath."
POISON = "Poisoned note: its rows fail in ONNX Runtime."
LINES = [
    json.dumps({"id": "a", "text": NOTE}),
    json.dumps({"text": "Possible pneumonia; rule out sepsis."}),
    json.dumps({"text": "   "}),  # bad here: no text
    json.dumps(
        {
            "id": 7,
            "text": NOTE,
            "spans": [{"start": 23, "end": 33, "label": "P"}, {"start": 57, "end": 76}],
        }
    ),
    json.dumps({"text": POISON}),  # refused by the server: inference fails on its rows
    json.dumps({"text": "Fever since Monday. No cough."}),
    "",  # blank: skipped
]
LAST = json.dumps({"id": "last", "text": "She reports a cough."})
GOOD = [1, 2, 4, 6, 8]


@pytest.fixture(scope="module")
def server(engine_for):
    engine = FaultyEngine(engine_for("bert"))
    engine.fault = poisoning(engine, POISON)
    with ServerThread({"bert": engine}) as running:
        yield running


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("prodigy") / "notes.jsonl"
    path.write_text("".join(line + "\n" for line in [*LINES, LAST]), encoding="utf-8")
    return path


def test_the_recipe_streams_the_prodigy_records_and_skips_bad_lines(
    server, source, engine_for, tmp_path, caplog
):
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    components = explain_recipe(
        "notes", str(partial), server=server.address, model="bert", lines_per_request=2
    )
    with partial.open("a", encoding="utf-8") as more:  # read as the annotator goes
        more.write(LAST + "\n")
    with caplog.at_level(logging.WARNING, logger="gradlight.prodigy"):
        tasks = list(components["stream"])

    assert components["dataset"] == "notes" and components["view_id"] == "blocks"
    config = components["config"]
    assert config["blocks"] == [{"view_id": "html"}, {"view_id": "choice", "text": None}]
    with Client(server.address, timeout=30) as client:
        (info,) = client.list_models().models
    multi = info.problem_type == "multi_label_classification"
    assert config["choice_style"] == ("multiple" if multi else "single")
    assert callable(components["on_exit"])

    labels = list(engine_for("bert").labels)
    assert [task["meta"]["line"] for task in tasks] == GOOD
    for task in tasks:
        check_prodigy(task, labels)
        assert "_input_hash" not in task  # hashes are Prodigy's, only where it is installed
        assert task["spans"]
        for span in task["spans"]:  # colour by score (the score rounded to 4 places)
            near = {shade(span["score"] + d) for d in (-5e-5, 0.0, 5e-5)}
            assert span["color"] in near, span
    assert [s["span_label"] for s in tasks[2]["spans"] if "span_label" in s] == ["P"]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2
    assert "line 3: text: is empty or whitespace only" in skipped[0]
    assert "line 5: " in skipped[1] and "inference failed" in skipped[1]

    out = tmp_path / "explained.jsonl"
    result = explain(source, out, "--server", server.address, "--model", "bert", "--format",
                     "prodigy")  # fmt: skip
    assert result.returncode == 3  # done, with the two bad lines
    assert_same_records(tasks, read_records(out))


def test_a_model_the_server_lacks_is_refused_at_the_start(server, source):
    with pytest.raises(BackendError, match="does not serve 'nope'"):
        explain_recipe("notes", str(source), server=server.address, model="nope")


def test_the_module_imports_without_prodigy_or_torch_and_prints_its_path():
    assert prodigy_recipe.prodigy is None  # not installed here: nothing registered
    printed = subprocess.run(
        [sys.executable, "-m", "gradlight.bulk.prodigy_recipe"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed.endswith("prodigy_recipe.py") and Path(printed).is_file()
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, gradlight.bulk.prodigy_recipe; print(sorted("
         "{'torch', 'prodigy'} & set(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    assert loaded == "[]"
