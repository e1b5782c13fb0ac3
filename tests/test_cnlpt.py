"""cnlp_transformers checkpoints, exported without cnlpt and served task by task, checked
against the numbers cnlpt's own model computed (tests/fixtures/cnlpt/make_fixtures.py wrote
the checkpoints and expected.json with the real cnlp-transformers 0.8.0). The RoBERTa one is
served on the words cnlpt splits a text into (the manifest's pre_tokenization); tokenizing the
whole string would give other tokens and other answers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from artifact_copies import edit_manifest
from conftest import CNLPT_EXPORTED as SERVED  # legacy_tagged is checked eagerly
from conftest import CNLPT_FIXTURES as FIXTURES
from eager_reference import input_x_gradient
from serving import ServerThread
from token_surfaces import check_surfaces

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import (
    SPLIT_AT_SPACES,
    TOKENIZER_DIR,
    WHOLE_TEXT,
    load_manifest,
)
from gradlight.artifact.tasks import read_tasks, served_artifacts
from gradlight.bench import engine_calls
from gradlight.client import Client
from gradlight.export.cnlpt import load_task, read_checkpoint
from gradlight.export.errors import ExportError
from gradlight.export.pipeline import export_cnlpt
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.tokenization import SPACE_MARKERS, TextEncoder, surface_spans
from gradlight.runtime.settings import EngineSettings

EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["checkpoints"]
MARKERS = ("<e>", "</e>")


def _softmax(logits):
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def cnlpt_client(exported_cnlpt):
    engines = {}
    for name, bundle in exported_cnlpt.items():
        for served, artifact in served_artifacts(name, bundle).items():
            engines[served] = Engine(artifact, EngineSettings(provider="cpu"))
    with ServerThread(engines) as server, Client(server.address, timeout=60) as client:
        yield client, engines


def test_every_classification_task_is_listed_with_its_labels(cnlpt_client):
    client, _ = cnlpt_client
    listed = {model.name: list(model.labels) for model in client.list_models().models}
    expected = {
        f"{name}/{task['name']}": task["labels"]
        for name in SERVED
        for task in EXPECTED[name]["tasks"]
    }
    assert listed == expected


@pytest.mark.parametrize("name", SERVED)
def test_served_logits_and_scores_equal_cnlpts_own(name, cnlpt_client):
    client, engines = cnlpt_client
    expected = EXPECTED[name]
    texts = expected["texts"]
    mask = np.array(expected["attention_mask"])
    for task in expected["tasks"]:
        model = f"{name}/{task['name']}"
        outputs = expected["outputs"][task["name"]]
        ref_logits, ref_scores = np.array(outputs["logits"]), np.array(outputs["scores"])
        # The graph's logits, through the engine the server runs.
        engine = engines[model]
        logits = engine_calls.forward(engine, engine.batch(engine.encode(texts, 128)))
        np.testing.assert_allclose(logits, ref_logits, atol=1e-4, rtol=0)
        # Over gRPC: the same tokens, probabilities and raw scores.
        response = client.attribute(texts, model=model, raw_scores=True)
        for row, result in enumerate(response.results):
            length = int(mask[row].sum())
            assert [t.token_id for t in result.tokens] == expected["input_ids"][row][:length]
            assert _offsets(result.tokens) == _cnlpts_offsets(expected, row, result.tokens)
            np.testing.assert_allclose(
                result.probabilities, _softmax(ref_logits[row]), atol=1e-5, rtol=0
            )
            served = np.array([list(t.raw_scores) for t in result.tokens]).T
            reference = ref_scores[row, :, :length]
            np.testing.assert_allclose(
                served, reference, atol=1e-4 * np.abs(reference).max(), rtol=0
            )


def _offsets(tokens) -> list[tuple[int, int]]:
    """The served offsets, but those of a token of spaces alone (checked in
    test_roberta_tokens_are_cnlpts_words_with_exact_offsets)."""
    return [(t.start, t.end) for t in tokens if not _spaces(t.token)]


def _spaces(token: str) -> bool:
    return set(token) <= SPACE_MARKERS


def _cnlpts_offsets(expected, row, tokens) -> list[tuple[int, int]]:
    """The offsets of cnlpt's tokens in the text as served (``surface_spans``), but those of a
    token of spaces alone: transformers' RoBERTa trims one character off the "Ġ" it puts
    before a piece right after a marker, where gradlight gives it no span."""
    offsets = [tuple(pair) for pair in expected["offsets"][row][: len(tokens)]]
    spans = surface_spans(expected["texts"][row], offsets, [t.special for t in tokens])
    return [span for span, t in zip(spans, tokens, strict=True) if not _spaces(t.token)]


def test_roberta_tokens_are_cnlpts_words_with_exact_offsets(cnlpt_client, exported_cnlpt):
    """The artifact records cnlpt's word split; each served token's span is exactly what the
    token spells in the original text (spaces, a tab, a newline, accents, CJK, an emoji)."""
    _, engines = cnlpt_client
    expected = EXPECTED["roberta_tagged"]
    for task in expected["tasks"]:
        artifact = exported_cnlpt["roberta_tagged"] / task["name"]
        assert load_manifest(artifact).pre_tokenization == SPLIT_AT_SPACES
        encoded = engines[f"roberta_tagged/{task['name']}"].encode(expected["texts"], 128)
        for row, (text, tokens) in enumerate(zip(expected["texts"], encoded, strict=True)):
            assert list(tokens.ids) == expected["input_ids"][row][: len(tokens)]
            check_surfaces(text, tokens, MARKERS)


def _whole_string_logits(engine, texts) -> tuple[list, np.ndarray]:
    """What the engine answers when each text is tokenized as one string."""
    whole = TextEncoder(engine.artifact_dir / TOKENIZER_DIR / "tokenizer.json", WHOLE_TEXT)
    encoded = whole.encode(texts, 128)
    return encoded, engine_calls.forward(engine, engine.batch(encoded))


def test_the_whole_string_would_not_give_cnlpts_answers(cnlpt_client):
    """The same texts tokenized as whole strings: a "Ġ" before each spaced marker and for each
    extra space, so other ids, and logits far outside the tolerance (measured on this fixture:
    up to 0.95 in a logit, 0.12 in a probability)."""
    _, engines = cnlpt_client
    expected = EXPECTED["roberta_tagged"]
    for task in expected["tasks"]:
        encoded, logits = _whole_string_logits(
            engines[f"roberta_tagged/{task['name']}"], expected["texts"]
        )
        for row, tokens in enumerate(encoded):
            cnlpts = [id_ for id_ in expected["input_ids"][row] if id_ != 1]  # no <pad>
            assert len(tokens) > len(cnlpts)
        reference = np.array(expected["outputs"][task["name"]]["logits"])
        assert np.abs(logits - reference).max() > 0.1  # the tolerance is 1e-4
        assert np.abs(_softmax(logits) - _softmax(reference)).max() > 0.01


def test_an_artifact_without_pre_tokenization_tokenizes_the_whole_string(exported_cnlpt, tmp_path):
    """A manifest from before the field is served as it was (the whole string); a value this
    gradlight does not know is refused when the artifact is loaded."""
    artifact = tmp_path / "Subject"
    shutil.copytree(exported_cnlpt["roberta_tagged"] / "Subject", artifact)
    edit_manifest(artifact, lambda data: data.pop("pre_tokenization"))
    engine = Engine(artifact, EngineSettings(provider="cpu"))
    try:
        assert engine.encoder.pre_tokenization == WHOLE_TEXT
        texts = EXPECTED["roberta_tagged"]["texts"]
        whole, _ = _whole_string_logits(engine, texts)
        assert [list(t.ids) for t in engine.encode(texts, 128)] == [list(t.ids) for t in whole]
    finally:
        engine.close()
    edit_manifest(artifact, lambda data: data.update(pre_tokenization="sentencepiece"))
    with pytest.raises(ArtifactError, match="unknown pre_tokenization 'sentencepiece'"):
        Engine(artifact, EngineSettings(provider="cpu"))


def test_an_entity_span_reads_as_cnlpt_marks_it(cnlpt_client):
    """The entities field marks the span with <e>...</e> as cnlpt's REST does: the answer is
    the tagged task's answer on the marked text."""
    client, _ = cnlpt_client
    marked = EXPECTED["proj_tagged"]["texts"][0]  # "Patient denies <e>chest pain</e> today."
    plain = marked.replace("<e>", "").replace("</e>", "")
    start = plain.index("chest pain")
    for task in EXPECTED["proj_tagged"]["tasks"]:
        model = f"proj_tagged/{task['name']}"
        answer = client.attribute(
            [plain], model=model, entities=[[(start, start + len("chest pain"))]]
        ).results[0]
        (entity,) = answer.entities
        assert entity.marked_text == marked
        logits = EXPECTED["proj_tagged"]["outputs"][task["name"]]["logits"][0]
        np.testing.assert_allclose(entity.result.probabilities, _softmax(logits), atol=1e-5)


def test_the_older_checkpoint_layout_loads_with_cnlpts_numbers():
    """cnlpt's models published before 0.8 (model_type "cnlpt"): rebuilt in gradlight, eager."""
    expected = EXPECTED["legacy_tagged"]
    batch = {
        "input_ids": np.array(expected["input_ids"]),
        "attention_mask": np.array(expected["attention_mask"]),
        "token_type_ids": np.array(expected["token_type_ids"]),
    }
    for task in expected["tasks"]:
        loaded = load_task(FIXTURES / "legacy_tagged", task["name"])
        assert loaded.spec.labels == tuple(task["labels"])
        logits, scores = input_x_gradient(loaded.model, batch)
        outputs = expected["outputs"][task["name"]]
        np.testing.assert_allclose(logits, outputs["logits"], atol=1e-5, rtol=0)
        reference = np.array(outputs["scores"])
        np.testing.assert_allclose(scores, reference, atol=1e-5 * np.abs(reference).max())


def test_tagging_and_relation_tasks_are_refused_saying_why(tmp_path):
    checkpoint = tmp_path / "tagger"
    shutil.copytree(FIXTURES / "proj_cls", checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["_tasks"][0]["type"] = "tagging"
    (checkpoint / "config.json").write_text(json.dumps(config))
    refused = read_checkpoint(checkpoint).refused()
    assert list(refused) == ["Negation"]
    assert "a tagging task" in refused["Negation"]
    config["_tasks"][1]["type"] = "relations"
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"no classification task.*Negation.*DocTimeRel"):
        export_cnlpt(checkpoint, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_gradlight_serve_serves_each_task_as_model_slash_task(exported_cnlpt):
    from processes import serve_process

    bundle = exported_cnlpt["proj_cls"]
    assert set(read_tasks(bundle).tasks) == {"Negation", "DocTimeRel"}
    server = serve_process(str(bundle), "--name", "clinical")
    try:
        with Client(server.address) as client:
            names = [model.name for model in client.list_models().models]
            assert sorted(names) == ["clinical/DocTimeRel", "clinical/Negation"]
            answer = client.predict(["Patient denies chest pain."], model="clinical/Negation")
            assert list(answer.results[0].labels) == ["-1", "1"]
    finally:
        assert server.terminate() == 0


def test_a_task_artifact_revalidates_against_the_checkpoint(exported_cnlpt):
    from gradlight.export.validation import validate_artifact

    report = validate_artifact(exported_cnlpt["proj_tagged"] / "Subject", FIXTURES / "proj_tagged")
    assert report.passed, report.format()
    assert {check.graph for check in report.checks} >= {"forward", "attribution_cotangent"}


def test_revalidation_says_when_an_artifact_does_not_split_at_spaces(exported_cnlpt, tmp_path):
    """The RoBERTa task revalidates; its copy without ``pre_tokenization`` (exported before the
    field) does not, and the report says to re-export it."""
    from gradlight.export.validation import validate_artifact

    exported = exported_cnlpt["roberta_tagged"] / "Uncertainty"
    report = validate_artifact(exported, FIXTURES / "roberta_tagged")
    assert report.passed, report.format()
    artifact = tmp_path / "Uncertainty"
    shutil.copytree(exported, artifact)
    edit_manifest(artifact, lambda data: data.pop("pre_tokenization"))
    report = validate_artifact(artifact, FIXTURES / "roberta_tagged")
    assert not report.passed
    (problem,) = report.problems
    assert "'none'" in problem and "'split_at_spaces'" in problem and "re-export" in problem


def test_a_long_text_read_as_windows_keeps_cnlpts_words_and_offsets(cnlpt_client):
    """Windows are cut from the text's word-split tokens: the answer's tokens are those of the
    whole text split at spaces, with the same exact offsets, in more than one window."""
    client, engines = cnlpt_client
    text = " ".join(EXPECTED["roberta_tagged"]["texts"] * 6)
    task = EXPECTED["roberta_tagged"]["tasks"][0]["name"]
    model = f"roberta_tagged/{task}"
    [whole] = engines[model].encode([text], 100_000)
    check_surfaces(text, whole, MARKERS)
    answer = client.attribute([text], model=model, long_texts="windows").results[0]
    assert len(answer.windows) > 1 and not answer.truncated
    assert [t.token_id for t in answer.tokens] == list(whole.ids)
    assert [(t.start, t.end) for t in answer.tokens] == list(whole.offsets)


def test_a_label_studio_task_marked_as_cnlpt_marks_it_is_answered_as_cnlpt(cnlpt_client):
    """A task whose text holds cnlpt's markers, at the Label Studio backend of the task's model
    (a name with a slash, ``MODEL/TASK``): the span is classified as cnlpt classifies the marked
    text, the regions index the task's text, and none falls on a marker."""
    from http_json import request_json

    from gradlight.runtime.serving.server import ServerSettings

    _, engines = cnlpt_client
    marked = EXPECTED["proj_tagged"]["texts"][0]  # "Patient denies <e>chest pain</e> today."
    tagged = {name: engine for name, engine in engines.items() if name.startswith("proj_tagged/")}
    with ServerThread(tagged, ServerSettings(port=0, http_port=0)) as server:
        for task in EXPECTED["proj_tagged"]["tasks"]:
            url = f"{server.http_url}label-studio/proj_tagged/{task['name']}/predict"
            status, answer = request_json(url, {"tasks": [{"data": {"text": marked}}]})
            assert status == 200
            [prediction] = answer["results"]
            logits = EXPECTED["proj_tagged"]["outputs"][task["name"]]["logits"][0]
            assert prediction["score"] == pytest.approx(_softmax(logits).max(), abs=1e-5)
            [entity] = [r["value"] for r in prediction["result"] if r["from_name"] == "entity"]
            assert entity["text"] == "chest pain" and marked[entity["start"] :].startswith(
                "chest pain</e>"
            )
            words = [r["value"] for r in prediction["result"] if r["from_name"] == "evidence"]
            assert words and all(marked[v["start"] : v["end"]] == v["text"] for v in words)
            assert not any("<" in v["text"] or ">" in v["text"] for v in words), words
        unpaired = {"tasks": [{"data": {"text": "Patient denies <e>chest pain."}}]}
        status, answer = request_json(url, unpaired)
        assert status == 200 and answer["results"][0]["error"]["field"] == "tasks[0].data.text"
