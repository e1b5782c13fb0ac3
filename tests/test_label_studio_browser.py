"""gradlight's prediction in a real Label Studio's labeling page, in headless Chromium: a task
predicted by a real gradlight server (the project's ML backend) opens with its evidence regions
drawn on the right words, each with its grade, and the predicted choice selected, both in the
draft Label Studio makes from the prediction and in the prediction itself. Asserted on the DOM
(tests/label_studio_page.py has the selectors and the facts they rest on); a screenshot is kept
in ``$GRADLIGHT_TEST_ARTIFACTS`` (else the test's tmp_path). Label
Studio's cache: tests/label_studio.py (configured_cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from label_studio import LabelStudio, cached
from label_studio_page import (
    SENTENCE,
    VIEWPORT,
    Region,
    checked_choices,
    evidence_regions,
    listed_regions,
    login,
    open_task,
    predicted_project,
    read_regions,
    screenshot,
    select_prediction,
    selected_tab,
)
from serving import ServerThread
from test_label_studio_harness import CACHE, SKIP_WHY

from gradlight.runtime.serving.label_studio_tasks import GRADE_NAMES
from gradlight.runtime.serving.server import ServerSettings

pytestmark = pytest.mark.skipif(not CACHE, reason=SKIP_WHY)  # test_label_studio_harness.py


@pytest.fixture(scope="module")
def gradlight(engine_for):
    with ServerThread({"bert": engine_for("bert")}, ServerSettings(port=0, http_port=0)) as s:
        yield s


@pytest.fixture(scope="module")
def ls():
    with LabelStudio(**cached()) as running:
        yield running


def _artifacts(tmp_path: Path) -> Path:
    named = os.environ.get("GRADLIGHT_TEST_ARTIFACTS")
    return Path(named) if named else tmp_path


def _shows(page, expected: list[Region], chosen: list[str], text: str) -> None:
    shown = read_regions(page)
    for region in expected:
        assert region.text == text[region.start : region.end]
        assert region in shown, (region, shown)  # these words, highlighted, with this grade
    listed = listed_regions(page)
    for region in expected:
        assert (region.label, region.text) in listed, (region, listed)
    assert checked_choices(page) == chosen


def test_the_labeling_page_draws_gradlights_evidence_on_its_words(
    ls, gradlight, engine_for, browser, tmp_path
):
    labels = list(engine_for("bert").labels)
    url = f"{gradlight.http_url.rstrip('/')}/label-studio/bert"
    project, [task] = predicted_project(ls, url, labels, [SENTENCE], title="gradlight browser")
    [prediction] = ls.predictions(task["id"])  # as Label Studio stored it
    expected = evidence_regions(prediction)
    assert expected and {r.label for r in expected} <= set(GRADE_NAMES)
    [chosen] = [r["value"]["choices"] for r in prediction["result"] if r["type"] == "choices"]

    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        login(page, ls)
        open_task(page, ls.base_url, project, task["id"], len(expected))
        # shown at once: a draft annotation made from the prediction, selected
        assert selected_tab(page) != str(prediction["id"])
        _shows(page, expected, chosen, SENTENCE)
        # the prediction itself, in its own tab
        select_prediction(page, prediction["id"], len(expected))
        _shows(page, expected, chosen, SENTENCE)
        shot = screenshot(page, _artifacts(tmp_path) / "label-studio-task.png")
    finally:
        context.close()
    assert shot.stat().st_size > 0
