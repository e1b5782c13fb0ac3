"""gradlight as a real Label Studio's ML backend: a project made with gradlight's labeling config
connects to a real ``gradlight serve`` HTTP port, Label Studio retrieves predictions for its
tasks, and what it stores equals what gradlight answers directly for the same tasks. Runs when
``GRADLIGHT_LABEL_STUDIO_CACHE`` names a cache dir (tests/test_label_studio_harness.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from label_studio import LabelStudio, LabelStudioError
from serving import ServerThread
from test_label_studio_harness import CACHE, SKIP_WHY, cached

from gradlight.runtime.serving.label_studio_tasks import labeling_config
from gradlight.runtime.serving.server import ServerSettings

pytestmark = pytest.mark.skipif(not CACHE, reason=SKIP_WHY)  # test_label_studio_harness.py

TEXTS = ["The patient denies chest pain.", "Fever was present on admission. No cough."]


@pytest.fixture(scope="module")
def gradlight(engine_for):
    with ServerThread({"bert": engine_for("bert")}, ServerSettings(port=0, http_port=0)) as s:
        yield s


@pytest.fixture(scope="module")
def ls():
    with LabelStudio(**cached()) as running:
        yield running


def _direct(gradlight, tasks: list[dict]) -> list[dict]:
    body = json.dumps({"tasks": tasks, "params": {}}).encode()
    request = urllib.request.Request(
        f"{gradlight.http_url.rstrip('/')}/label-studio/bert/predict",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)["results"]


def test_label_studio_stores_what_gradlight_predicts(ls, gradlight, engine_for):
    labels = list(engine_for("bert").labels)
    project = ls.create_project(labeling_config(labels, False), title="gradlight live")
    ls.import_tasks(project["id"], [{"data": {"text": text}} for text in TEXTS])
    url = f"{gradlight.http_url.rstrip('/')}/label-studio/bert"
    ls.connect_backend(project["id"], url)
    tasks = ls.tasks(project["id"])
    ls.retrieve_predictions(project["id"], [task["id"] for task in tasks])
    direct = _direct(gradlight, [{"id": t["id"], "data": t["data"]} for t in tasks])
    for task, expected in zip(tasks, direct, strict=True):
        [stored] = ls.predictions(task["id"])
        assert stored["model_version"] == expected["model_version"]
        assert stored["score"] == pytest.approx(expected["score"])
        assert stored["result"] == expected["result"]
        text = task["data"]["text"]
        spans = [r["value"] for r in stored["result"] if "start" in r["value"]]
        assert spans and all(text[v["start"] : v["end"]] == v["text"] for v in spans)


def test_a_project_whose_choices_are_not_the_models_is_refused_naming_them(ls, gradlight):
    project = ls.create_project(labeling_config(["yes", "no"], False), title="wrong choices")
    url = f"{gradlight.http_url.rstrip('/')}/label-studio/bert"
    with pytest.raises(LabelStudioError) as refused:
        ls.connect_backend(project["id"], url)
    # Label Studio 1.23.2 says only that the backend "might be incompatible with the current
    # labeling configuration"; gradlight's own /setup answer (in its log) names the mismatch
    assert "incompatible" in json.dumps(refused.value.body)
    assert ls.backends(project["id"]) == []
    config = labeling_config(["yes", "no"], False)
    request = urllib.request.Request(
        f"{url}/setup",
        data=json.dumps({"project": "1.0", "schema": config}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)
    said = answer.value.read().decode()
    assert answer.value.code == 400 and "label_0" in said and "yes" in said
