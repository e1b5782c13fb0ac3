"""Label Studio's ML backend protocol on the real HTTP server (runtime/serving/label_studio.py):
health, setup against the labeling config, predictions with the same regions as
``gradlight explain --format label-studio``, webhook, train refusal, auth and bad input."""

from __future__ import annotations

import base64
import json

import pytest
from bulk_formats import check_label_studio
from http_json import request, request_json

from gradlight.bulk import formats
from gradlight.bulk.lines import Item
from gradlight.client import palette
from gradlight.runtime.serving import label_studio_tasks as ls
from gradlight.runtime.serving.label_studio_config import check_config
from gradlight.wire.errors import RequestError

TOKEN = "ls-token-123"
TEXT = "The patient denies chest pain. No evidence of pneumonia."
BEARER = {"Authorization": f"Bearer {TOKEN}"}
MAX_TASKS = 3


def _basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


@pytest.fixture(scope="module")
def backend(engine_for, tmp_path_factory):
    """A server of the tiny BERT alone, with a token, at most 3 texts a request and long texts
    read as windows up to 200 tokens."""
    from serving import token_server

    from gradlight.runtime.settings import DocumentSettings, ServiceLimits

    with token_server(
        {"bert": engine_for("bert")},
        TOKEN,
        tmp_path_factory.mktemp("ls"),
        limits=ServiceLimits(max_texts_per_request=MAX_TASKS, max_receive_message_bytes=64 * 1024),
        documents=DocumentSettings(long_texts="windows", max_document_tokens=200),
    ) as server:
        yield server


@pytest.fixture(scope="module")
def model(backend):
    status, answer = request_json(backend.http_url + "v1/models", headers=BEARER)
    assert status == 200
    return answer["models"][0]


def _url(backend, action: str, model: str = "bert", options: str = "") -> str:
    path = "/".join(part for part in ("label-studio", model, options, action) if part)
    return backend.http_url + path


def test_health_is_open_and_selects_the_only_model(backend):
    for model in ("bert", ""):
        status, answer = request_json(_url(backend, "health", model))
        assert status == 200
        assert answer == {"status": "UP", "model_class": "gradlight", "model": "bert"}
    status, answer = request_json(_url(backend, "health", "nope"))
    assert status == 404 and answer["error"]["reason"] == "MODEL_NOT_FOUND"
    assert "bert" not in answer["error"]["message"]  # open: the models are not listed
    status, answer = request_json(_url(backend, "predict", "", "/sentences"), {}, headers=BEARER)
    assert status == 400 and answer["error"]["field"] == "url"
    # credentials sent are checked, so Label Studio can tell a wrong token from a model down
    status, answer = request_json(_url(backend, "health"), headers=_basic("ls", "wrong"))
    assert status == 401 and answer["error"]["reason"] == "UNAUTHENTICATED"
    assert request_json(_url(backend, "health"), headers=_basic("ls", TOKEN))[0] == 200


def test_setup_accepts_the_printed_config_and_names_a_mismatch(backend, model, caplog):
    config = ls.labeling_config(model["labels"], multi_label=False)
    body = {"project": "1.1700000000", "schema": config, "hostname": "http://ls:8080"}
    status, answer = request_json(_url(backend, "setup"), body, headers=BEARER)
    assert status == 200
    assert answer == {"model_version": f"bert@{model['revision']} (input_x_gradient)"}
    wrong = ls.labeling_config([*model["labels"][1:], "EXTRA"], multi_label=False)
    status, answer = request_json(_url(backend, "setup"), {**body, "schema": wrong}, headers=BEARER)
    assert status == 400 and answer["error"]["field"] == "schema"
    message = answer["error"]["message"]
    assert repr(model["labels"][0]) in message and "'EXTRA'" in message
    assert "gradlight label-config" in message
    # Label Studio shows only a generic message: the server's log names the mismatch
    assert any("'EXTRA'" in r.getMessage() and r.levelname == "INFO" for r in caplog.records)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ('<!DOCTYPE x [<!ENTITY a "b">]><View/>', "DOCTYPE"),
        ("<View><Text", "well-formed"),
        ("<View/>", "<Text"),
        ('<View><Text name="text" value="$text"/></View>', "<Choices"),
        ("x" * 300_000, "limit"),
    ],
)
def test_config_check_refuses_what_does_not_fit(config, named):
    with pytest.raises(RequestError, match=named):
        check_config(config, ["a", "b"])
    evidence_missing = ls.labeling_config(["a", "b"], False).replace('value="against"', 'value="x"')
    with pytest.raises(RequestError, match="against"):
        check_config(evidence_missing, ["a", "b"])


def test_predict_gives_the_bulk_regions(backend, model):
    texts = [TEXT, "Café résumé naïve — 東京 😀."]
    tasks = [{"id": n, "data": {"text": text}} for n, text in enumerate(texts, 1)]
    body = {"tasks": tasks, "project": "1.1700000000", "params": {"context": None}}
    status, answer = request_json(_url(backend, "predict", ""), body, headers=_basic("ls", TOKEN))
    assert status == 200 and len(answer["results"]) == 2
    config = ls.labeling_config(model["labels"], multi_label=False)
    from gradlight.client import Client

    with Client(backend.address, token=TOKEN, timeout=60) as client:
        served = client.attribute(texts, model="bert", raw_scores=True).results
    options = formats.OutputOptions(
        format=formats.LABEL_STUDIO, labels=(formats.PREDICTED,), selection=ls.SELECTION
    )
    rows = zip(texts, answer["results"], served, strict=True)
    for n, (text, prediction, result) in enumerate(rows, 1):
        assert prediction["model_version"] == f"bert@{model['revision']} (input_x_gradient)"
        check_label_studio({"data": {"text": text}, "predictions": [prediction]}, config)
        bulk = formats.record(Item(n, text), result, options)["predictions"][0]
        assert _shape(prediction["result"]) == _shape(bulk["result"])
        assert abs(prediction["score"] - bulk["score"]) < 1e-4
        evidence = [r for r in prediction["result"] if r["from_name"] == ls.EVIDENCE]
        assert evidence and {r["value"]["labels"][0] for r in evidence} <= set(ls.GRADE_NAMES)
        assert any(r["value"]["labels"] == [ls.STRONG] for r in evidence)  # the top word


def _shape(regions: list[dict]) -> list[tuple]:
    return [
        (r["id"], r["from_name"], r["type"], sorted(r["value"].items()), round(r["score"], 3))
        for r in regions
    ]


def test_the_url_asks_for_a_method_and_sentences(backend, model):
    body = {"tasks": [{"data": {"text": TEXT}}]}
    url = _url(backend, "predict", options="integrated_gradients,sentences")
    status, answer = request_json(url, body, headers=BEARER)
    assert status == 200
    [prediction] = answer["results"]
    version = f"bert@{model['revision']} (integrated_gradients, sentences)"
    assert prediction["model_version"] == version
    sentences = [r for r in prediction["result"] if r["from_name"] == ls.SENTENCE]
    assert [r["value"]["text"] for r in sentences] == [
        "The patient denies chest pain.",
        "No evidence of pneumonia.",
    ]
    assert max(r["score"] for r in sentences) == 1.0  # graded against the strongest sentence
    config = ls.labeling_config(model["labels"], multi_label=False)
    check_label_studio({"data": {"text": TEXT}, "predictions": [prediction]}, config)
    setup = _url(backend, "setup", options="integrated_gradients,sentences")
    status, answer = request_json(setup, {"schema": config}, headers=BEARER)
    assert status == 200 and answer == {"model_version": version}  # the same: asked once
    no_sentences = config.replace('name="sentence"', 'name="sentences_elsewhere"')
    status, answer = request_json(setup, {"schema": no_sentences}, headers=BEARER)
    assert status == 400 and '<Labels name="sentence"' in answer["error"]["message"]
    for options in ("nope", "sentences,gradient_shap,integrated_gradients"):
        status, answer = request_json(
            _url(backend, "predict", options=options), body, headers=BEARER
        )
        assert status == 400 and answer["error"]["field"] == "url"
        assert "/label-studio/bert/gradient_shap,sentences" in answer["error"]["message"]


def test_tasks_with_spans_are_classified_per_span(backend, model):
    start = TEXT.index("chest pain")
    spans = [{"start": start, "end": start + len("chest pain")}]
    tasks = [{"data": {"text": TEXT, "spans": spans}}, {"data": {"text": TEXT}}]
    url = _url(backend, "predict", options="sentences")
    status, answer = request_json(url, {"tasks": tasks}, headers=BEARER)
    assert status == 200
    spanned, whole = answer["results"]
    assert spanned["model_version"] == whole["model_version"]  # one version for the call
    assert not any(r["from_name"] == ls.SENTENCE for r in spanned["result"])
    assert any(r["from_name"] == ls.SENTENCE for r in whole["result"])
    [entity] = [r for r in spanned["result"] if r["from_name"] == ls.ENTITY]
    assert (
        entity["value"]["text"] == "chest pain" and entity["value"]["labels"][0] in model["labels"]
    )
    assert not any(r["from_name"] == ls.CHOICES for r in spanned["result"])
    assert any(r["from_name"] == ls.EVIDENCE for r in spanned["result"])
    assert whole["result"][0]["from_name"] == ls.CHOICES


def test_the_grade_colours_are_the_palette_s():
    for (_, _, colour), score in zip(ls.GRADES, (1.0, 0.6, 0.3), strict=True):
        assert colour == palette.hex_colour(palette.shade(score))
    assert palette.hex_colour(palette.shade(-0.8)) == ls.AGAINST_COLOUR
    grades = [ls.grade(s) for s in (1.0, 0.5, 0.1, -0.2)]
    assert grades == ["strong", "moderate", "weak", "against"]


def test_webhook_is_open_and_train_is_refused(backend):
    status, answer = request_json(_url(backend, "webhook"), {"action": "TASKS_CREATED"})
    assert status == 200 and answer == {"status": "ok"}  # Label Studio sends no credentials
    status, answer = request_json(_url(backend, "train"), {"project": "1.1"}, headers=BEARER)
    assert status == 501 and "does not train" in answer["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, _basic("ls", "wrong"), {"Authorization": "Basic %%"}],
)
def test_a_wrong_token_is_refused(backend, headers):
    body = {"tasks": [{"data": {"text": TEXT}}]}
    status, answer = request_json(_url(backend, "predict"), body, headers=headers)
    assert status == 401 and answer["error"]["reason"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"tasks": []}, 400, "tasks"),
        ({"tasks": {"data": {"text": TEXT}}}, 400, "tasks"),
        (b'{"tasks": [', 400, "body"),
        ({"tasks": [{"data": {"text": "word " * 20_000}}]}, 413, "body"),
    ],
)
def test_bad_input_is_a_clear_error_and_the_server_keeps_serving(backend, body, status, field):
    got, _, payload = request(_url(backend, "predict"), body, headers=BEARER)
    error = json.loads(payload)["error"]
    assert got == status and error["field"] == field and error["message"]
    ok, answer = request_json(
        _url(backend, "predict"), {"tasks": [{"data": {"text": TEXT}}]}, headers=BEARER
    )
    assert ok == 200 and len(answer["results"]) == 1


def test_a_bad_task_is_answered_alone_and_the_others_are_predicted(backend, caplog):
    bad = [
        ({"data": {}}, "tasks[1].data.text"),
        ({"data": {"text": "word " * 500}}, "tasks[3].data.text"),  # over 200 tokens
        ({"data": {"text": TEXT, "spans": [{"start": 5, "end": 500}]}}, "tasks[5].data.spans[0]"),
    ]
    tasks = []
    for task, _ in bad:
        tasks += [{"data": {"text": TEXT}}, task]
    tasks += [{"data": {"text": TEXT}}] * MAX_TASKS  # more than one request's worth
    status, answer = request_json(_url(backend, "predict"), {"tasks": tasks}, headers=BEARER)
    assert status == 200 and len(answer["results"]) == len(tasks)
    for n, prediction in enumerate(answer["results"]):
        if n % 2 == 1 and n < 2 * len(bad):
            field = bad[n // 2][1]
            assert "result" not in prediction and prediction["error"]["field"] == field
            assert prediction["error"]["message"]
        else:
            assert prediction["result"][0]["value"]["choices"]
    logged = [r.getMessage() for r in caplog.records if "tasks refused" in r.getMessage()]
    assert logged and "3 of" in logged[-1] and "tasks[1].data.text" in logged[-1]
    first = answer["results"][0]
    assert all(p.get("result", first["result"]) == first["result"] for p in answer["results"])


def test_label_config_command_prints_the_config_setup_accepts(backend, model, exported, capsys):
    from gradlight.cli.main import main

    expected = ls.labeling_config(model["labels"], multi_label=False)
    assert main(["label-config", "--artifact", str(exported("bert"))]) == 0
    assert capsys.readouterr().out == expected
    server = ["--server", backend.address, "--auth-token-file", str(backend.token_file)]
    assert main(["label-config", *server]) == 0
    assert capsys.readouterr().out == expected
    assert main(["label-config", *server, "--model", "nope"]) == 2
    assert "serving: bert" in capsys.readouterr().err
    check_config(expected, model["labels"])


def test_an_answer_over_the_send_limit_is_refused(engine_for):
    from serving import ServerThread

    from gradlight.runtime.serving.server import ServerSettings
    from gradlight.runtime.settings import ServiceLimits

    limits = ServiceLimits(max_send_message_bytes=1024)
    settings = ServerSettings(port=0, http_port=0, limits=limits)
    with ServerThread({"bert": engine_for("bert")}, settings) as server:
        body = {"tasks": [{"data": {"text": TEXT}}] * 8}
        status, answer = request_json(_url(server, "predict"), body)
        assert status == 429 and answer["error"]["reason"] == "RESPONSE_TOO_LARGE"
        one = {"tasks": [{"data": {"text": "No pain."}}]}
        assert request_json(_url(server, "predict"), one)[0] == 200


def test_inline_markers_become_spans_and_regions_move_back_onto_the_marked_text():
    from gradlight.runtime.serving.label_studio_markers import remark, unmark

    marked = "A <e>b c</e> d. <e>e</e>f"
    plain, spans, inserted = unmark("t", marked)
    assert plain == "A b c d. ef" and spans == ((2, 5), (9, 10))
    regions = [(2, 3), (0, 8), (10, 11), (9, 10), (2, 5)]
    prediction = {
        "result": [{"value": {"start": a, "end": b, "text": plain[a:b]}} for a, b in regions]
    }
    moved = [r["value"]["text"] for r in remark(prediction, marked, inserted)["result"]]
    assert moved == ["b", "A <e>b c</e> d.", "f", "e", "b c"]
    assert unmark("t", "no markers") is None
    for bad in ("<e>a", "a</e>", "<e><e>a</e></e>", "<e></e>"):
        with pytest.raises(RequestError):
            unmark("t", bad)


def test_tasks_go_in_requests_the_queue_takes_and_a_task_too_large_alone_is_refused_alone(
    engine_for,
):
    """Integrated gradients costs labels x (steps + 2) rows a task (3 x 34 for the tiny BERT):
    with 250 queued rows at most, three tasks a request are refused as a whole, two pass; with
    50 rows at most, each task is too large alone."""
    from serving import ServerThread

    from gradlight.runtime.serving.server import ServerSettings
    from gradlight.runtime.settings import BatchSettings, ServiceLimits

    tasks = {"tasks": [{"data": {"text": f"{TEXT} Visit {n}."}} for n in range(5)]}
    for rows, predicted in ((250, True), (50, False)):
        settings = ServerSettings(
            port=0,
            http_port=0,
            batch=BatchSettings(max_queue_size=rows),
            limits=ServiceLimits(max_texts_per_request=MAX_TASKS),
        )
        with ServerThread({"bert": engine_for("bert")}, settings) as server:
            url = _url(server, "predict", options="integrated_gradients")
            status, answer = request_json(url, tasks)
            assert status == 200 and len(answer["results"]) == 5
            for n, prediction in enumerate(answer["results"]):
                if predicted:
                    assert prediction.get("result"), prediction
                else:
                    assert prediction["error"]["field"] == f"tasks[{n}]"
                    assert "rows" in prediction["error"]["message"]
            empty = {"tasks": [{"data": {"text": TEXT, "spans": []}}]}  # classified whole
            [whole] = request_json(_url(server, "predict"), empty)[1]["results"]
            assert whole["result"][0]["from_name"] == ls.CHOICES
