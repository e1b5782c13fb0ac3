"""gradlight as a real Label Studio's ML backend: a project made with gradlight's labeling config
connects to a real ``gradlight serve`` HTTP port (with a token, as Label Studio's basic auth
password), Label Studio retrieves predictions for its tasks, and what it stores equals what
gradlight answers directly for the same tasks, and what ``gradlight explain --format
label-studio`` writes for Label Studio's import. Bad input reaches Label Studio's log as a
clear error and the server keeps serving. Label Studio's cache: tests/label_studio.py
(configured_cache)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from explain_runs import explain, write_input
from label_studio import LabelStudio, LabelStudioError, cached
from serving import token_server
from test_label_studio_harness import CACHE, SKIP_WHY

from gradlight.runtime.serving.label_studio_tasks import labeling_config
from gradlight.runtime.settings import DocumentSettings

pytestmark = pytest.mark.skipif(not CACHE, reason=SKIP_WHY)  # test_label_studio_harness.py

TOKEN = "label-studio-backend-token"
TEXTS = ["The patient denies chest pain.", "Fever was present on admission. No cough."]
MAX_TOKENS = 64  # per text read as windows: a longer task is refused alone


@pytest.fixture(scope="module")
def gradlight(engine_for, tmp_path_factory):
    with token_server(
        {"bert": engine_for("bert")},
        TOKEN,
        tmp_path_factory.mktemp("ls-live"),
        documents=DocumentSettings(long_texts="windows", max_document_tokens=MAX_TOKENS),
    ) as server:
        yield server


@pytest.fixture(scope="module")
def ls():
    with LabelStudio(**cached()) as running:
        yield running


@pytest.fixture(scope="module")
def labels(engine_for):
    return list(engine_for("bert").labels)


def _backend_url(gradlight, options: str = "") -> str:
    return f"{gradlight.http_url.rstrip('/')}/label-studio/bert" + (
        f"/{options}" if options else ""
    )


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def _connected(ls, gradlight, labels, tasks, title, options=""):
    project = ls.create_project(labeling_config(labels, False), title=title)
    ls.import_tasks(project["id"], tasks)
    ls.connect_backend(project["id"], _backend_url(gradlight, options), basic_auth=("ls", TOKEN))
    stored = ls.tasks(project["id"])
    ls.retrieve_predictions(project["id"], [task["id"] for task in stored])
    return project, stored


def test_label_studio_stores_what_gradlight_predicts(ls, gradlight, labels):
    tasks = [{"data": {"text": text}} for text in TEXTS]
    _, stored = _connected(ls, gradlight, labels, tasks, "live", "integrated_gradients,sentences")
    direct = _post(
        _backend_url(gradlight, "integrated_gradients,sentences") + "/predict",
        {"tasks": [{"id": t["id"], "data": t["data"]} for t in stored]},
    )["results"]
    for task, expected in zip(stored, direct, strict=True):
        [prediction] = ls.predictions(task["id"])
        assert prediction["model_version"] == expected["model_version"]
        assert expected["model_version"].endswith("(integrated_gradients, sentences)")
        assert prediction["score"] == pytest.approx(expected["score"])
        assert prediction["result"] == expected["result"]
        text = task["data"]["text"]
        spans = [r["value"] for r in prediction["result"] if "start" in r["value"]]
        assert spans and all(text[v["start"] : v["end"]] == v["text"] for v in spans)
    # asked again, Label Studio finds each task has this version's prediction: none is added
    ls.retrieve_predictions(stored[0]["project"], [task["id"] for task in stored])
    assert [len(ls.predictions(task["id"])) for task in stored] == [1, 1]


def test_the_bulk_tasks_import_as_they_are_with_the_live_regions(ls, gradlight, labels, tmp_path):
    lines = [json.dumps({"text": text, "id": n}) for n, text in enumerate(TEXTS)]
    output = tmp_path / "ls.jsonl"
    server = ["--server", gradlight.address, "--auth-token-file", gradlight.token_file]
    explain(write_input(tmp_path / "in.jsonl", lines), output, *server, "--format", "label-studio")
    config = output.with_name("ls.jsonl.label-config.xml").read_text()
    assert config == labeling_config(labels, False)
    imported = ls.create_project(config, title="bulk")
    answer = ls.request_raw(
        "POST", f"/api/projects/{imported['id']}/import", output.with_name("ls.jsonl.tasks.json")
    )
    assert (answer["task_count"], answer["prediction_count"]) == (2, 2)
    tasks = [{"data": {"text": text}} for text in TEXTS]
    _, live = _connected(ls, gradlight, labels, tasks, "live for bulk")
    for bulk_task, live_task in zip(ls.tasks(imported["id"]), live, strict=True):
        [bulk] = ls.predictions(bulk_task["id"])
        [served] = ls.predictions(live_task["id"])
        assert bulk["model_version"] == served["model_version"]
        assert bulk["score"] == pytest.approx(served["score"], abs=1e-5)
        assert _regions(bulk["result"]) == _regions(served["result"])


def _regions(result: list[dict]) -> list[tuple]:
    return [
        (r["id"], r["from_name"], r["type"], json.dumps(r["value"], sort_keys=True),
         round(r["score"], 3))
        for r in result
    ]  # fmt: skip


def test_bad_tasks_are_logged_by_label_studio_and_the_rest_predicted(ls, gradlight, labels):
    tasks = [
        {"data": {"text": TEXTS[0]}},
        {"data": {"text": "  \n "}},  # Label Studio refuses to import one without "text"
        {"data": {"text": " ".join(["word"] * 4 * MAX_TOKENS)}},
    ]
    _, stored = _connected(ls, gradlight, labels, tasks, "bad tasks")
    assert [len(ls.predictions(task["id"])) for task in stored] == [1, 0, 0]
    log = _wait_for(ls, "tasks[2].data.text")
    assert "tasks[1].data.text" in log and "is missing or empty" in log
    assert f"more than {MAX_TOKENS} tokens" in log
    assert _post(_backend_url(gradlight) + "/predict", {"tasks": tasks[:1]})["results"][0]


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (lambda labels: labeling_config(["yes", "no"], False), ["label_0", "yes"]),
        (
            lambda labels: labeling_config(labels, False).replace('name="evidence"', 'name="ev"'),
            ['<Labels name="evidence" toName="text">'],
        ),
    ],
    ids=["wrong-choices", "wrong-control-name"],
)
def test_a_project_whose_config_does_not_fit_is_refused_naming_why(
    ls, gradlight, labels, config, named
):
    project = ls.create_project(config(labels), title="config that does not fit")
    url = _backend_url(gradlight)
    with pytest.raises(LabelStudioError) as refused:
        ls.connect_backend(project["id"], url, basic_auth=("ls", TOKEN))
    # Label Studio 1.23.2 says only that the backend "might be incompatible with the current
    # labeling configuration"; gradlight's /setup answer and its log name the mismatch
    assert "incompatible" in json.dumps(refused.value.body)
    assert ls.backends(project["id"]) == []
    with pytest.raises(urllib.error.HTTPError) as answer:
        _post(f"{url}/setup", {"project": "1.0", "schema": project["label_config"]})
    said = json.loads(answer.value.read())["error"]["message"]
    assert answer.value.code == 400 and all(part in said for part in named), said


def test_a_wrong_token_is_refused_at_connection(ls, gradlight, labels):
    project = ls.create_project(labeling_config(labels, False), title="wrong token")
    with pytest.raises(LabelStudioError) as refused:
        ls.connect_backend(project["id"], _backend_url(gradlight), basic_auth=("ls", "wrong"))
    assert "authentication" in json.dumps(refused.value.body)
    assert ls.backends(project["id"]) == []
    assert _post(_backend_url(gradlight) + "/predict", {"tasks": [{"data": {"text": "Ok."}}]})


def _wait_for(ls, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while needle not in (log := ls.log(tail=200_000)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert needle in log, log[-3000:]
    return log
