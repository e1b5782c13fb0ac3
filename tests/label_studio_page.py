"""Label Studio's labeling page in Chromium (Playwright), read from its DOM: for
tests/test_label_studio_browser.py, and the docs screenshot::

    python tests/label_studio_page.py ARTIFACT OUT.png

serves the exported model ARTIFACT with a real gradlight server, connects it to a real Label
Studio (tests/label_studio.py, from the cache) as a project's ML backend, retrieves the
prediction of one clinical sentence and saves the labeling page of that task to OUT.png.

What this rests on (Label Studio 1.23.2, observed in headless Chromium):

* Login: the form at ``/user/login/`` (``input[name=email]``, ``input[name=password]``) sets
  the session cookie; the harness's API token does not log a browser in.
* The labeling page of a task: ``/projects/PID/data?task=TID`` (Label Studio adds ``&tab=N``):
  the data manager, its task list on the left, the labeling view beside it.
* A task with predictions and no annotation opens with a draft annotation made from a
  prediction (the one whose model_version is the project's, else the first), selected: its
  regions are in the text at once, no project setting needed (``show_collab_predictions``,
  on by default, matters only to the label stream ``?labeling=1``). Each prediction is a tab
  too: ``.lsf-annotation-button[data-annotation-id=PREDICTION_ID]``, marked
  ``title="Prediction score = ..."``; clicking it shows the prediction itself (read-only).
* A region in the text: ``.lsf-richtext span.htx-highlight`` with ``data-start``,
  ``data-end`` (the region's offsets), ``data-index`` (its number in the Regions panel) and
  ``data-label="N:LABEL"``. The label is not drawn beside the words (class ``htx-no-label``:
  Text's ``showLabels`` is off) but in the Regions panel: ``.lsf-outliner-item`` with
  ``.lsf-outliner-item__index``, ``.lsf-labels-list`` (the label, in its colour) and
  ``.lsf-outliner-item__text`` (the text), a virtual list: only the items in view are drawn.
* Choices: ``.lsf-choices input.ant-checkbox-input[name=CHOICE]``, checked when chosen.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HIGHLIGHTS = ".lsf-richtext span.htx-highlight"
OUTLINER_ITEMS = ".lsf-outliner-item"
CHOICES = ".lsf-choices input.ant-checkbox-input"
LABELING = "#label-studio-dm"  # the labeling view: tabs, text, controls, side panels
VIEWPORT = {"width": 1280, "height": 800}
DOCS_VIEWPORT = {"width": 1280, "height": 640}
TIMEOUT_MS = 30_000
SENTENCE = "The patient denies chest pain but reports shortness of breath on exertion."


@dataclass(frozen=True, order=True)
class Region:
    """A region as the page draws it in the text: its offsets, words and label."""

    start: int
    end: int
    text: str
    label: str


def login(page: Any, ls: Any) -> None:
    """Log ``page`` in to Label Studio ``ls`` (tests/label_studio.py) with its user's form."""
    page.goto(f"{ls.base_url}/user/login/")
    page.fill("input[name=email]", ls.email)
    page.fill("input[name=password]", ls.password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    if "/user/login" in page.url:
        raise RuntimeError(f"Label Studio refused the login of {ls.email}")


def task_url(base_url: str, project: int, task: int) -> str:
    return f"{base_url}/projects/{project}/data?task={task}"


def open_task(page: Any, base_url: str, project: int, task: int, regions: int) -> None:
    """Open the labeling page of ``task`` and wait until ``regions`` regions are in its text."""
    page.goto(task_url(base_url, project, task))
    wait_for_regions(page, regions)


def wait_for_regions(page: Any, regions: int) -> None:
    page.wait_for_selector(".lsf-richtext", timeout=TIMEOUT_MS)
    page.wait_for_function(
        "([selector, n]) => document.querySelectorAll(selector).length >= n",
        arg=[HIGHLIGHTS, regions],
        timeout=TIMEOUT_MS,
    )


def select_prediction(page: Any, prediction: int, regions: int) -> None:
    """Show the prediction itself (its tab above the text), not the draft made from it."""
    tab = page.locator(f'.lsf-annotation-button[data-annotation-id="{prediction}"]')
    tab.locator("[title^='Prediction score']").wait_for(timeout=TIMEOUT_MS)
    tab.locator(".lsf-annotation-button__main").click()
    page.wait_for_function(
        "id => document.querySelector(`.lsf-annotation-button[data-annotation-id='${id}']`)"
        "?.classList.contains('lsf-annotation-button_selected')",
        arg=str(prediction),
        timeout=TIMEOUT_MS,
    )
    wait_for_regions(page, regions)


def selected_tab(page: Any) -> str | None:
    """``data-annotation-id`` of the annotation or prediction shown."""
    return page.get_attribute(".lsf-annotation-button_selected", "data-annotation-id")


def read_regions(page: Any) -> list[Region]:
    """The regions drawn in the text, in text order (a region drawn as several spans, one)."""
    spans = page.eval_on_selector_all(
        HIGHLIGHTS,
        """spans => spans.map(s => ({
            index: s.dataset.index, start: s.dataset.start, end: s.dataset.end,
            label: s.dataset.label ?? "", text: s.textContent}))""",
    )
    merged: dict[str, dict] = {}
    for span in spans:
        key = span["index"] or f"#{len(merged)}"
        if key in merged:
            merged[key]["text"] += span["text"]
            merged[key]["label"] = merged[key]["label"] or span["label"]
        else:
            merged[key] = dict(span)
    return sorted(
        Region(
            start=int(r["start"]),
            end=int(r["end"]),
            text=r["text"],
            label=r["label"].partition(":")[2] if ":" in r["label"] else r["label"],
        )
        for r in merged.values()
    )


def listed_regions(page: Any) -> list[tuple[str, str]]:
    """(label, text) of each region of the Regions panel, in its order. The panel is a virtual
    list (it draws the items in view only), so it is scrolled with the mouse wheel, top to end."""
    holder = page.locator(".lsf-outliner .lsf-tree-list-holder")
    if holder.count():
        holder.first.hover()
        page.mouse.wheel(0, -100_000)  # to the top
        page.wait_for_timeout(50)
    seen: dict[int, tuple[str, str]] = {}
    for _ in range(100):
        items = page.eval_on_selector_all(
            OUTLINER_ITEMS,
            """items => items.map(i => [
                i.querySelector('.lsf-outliner-item__index')?.textContent ?? '',
                i.querySelector('.lsf-labels-list')?.textContent ?? '',
                i.querySelector('.lsf-outliner-item__text')?.textContent ?? ''])""",
        )
        new = {int(n): (label, text) for n, label, text in items if n.isdigit()}
        if not holder.count() or set(new) <= set(seen):
            seen.update(new)
            break
        seen.update(new)
        page.mouse.wheel(0, 120)
        page.wait_for_timeout(50)
    return [seen[n] for n in sorted(seen)]


def checked_choices(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        CHOICES, "inputs => inputs.filter(i => i.checked).map(i => i.name)"
    )


def screenshot(page: Any, path: Path, *, full_page: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path


def predicted_project(
    ls: Any, backend_url: str, labels: list[str], texts: list[str], title: str = "gradlight"
) -> tuple[int, list[dict]]:
    """A project with gradlight's labeling config, ``texts`` as tasks, the gradlight ML backend
    at ``backend_url`` connected and predictions retrieved: (project id, its tasks)."""
    from gradlight.runtime.serving.label_studio_tasks import labeling_config

    project = ls.create_project(labeling_config(labels, False), title=title)
    ls.import_tasks(project["id"], [{"data": {"text": text}} for text in texts])
    ls.connect_backend(project["id"], backend_url)
    tasks = ls.tasks(project["id"])
    ls.retrieve_predictions(project["id"], [task["id"] for task in tasks])
    return project["id"], tasks


def evidence_regions(prediction: dict) -> list[Region]:
    """The ``evidence`` regions of a prediction as Label Studio stores it."""
    return sorted(
        Region(v["start"], v["end"], v["text"], v["labels"][0])
        for r in prediction["result"]
        if r["from_name"] == "evidence" and r["type"] == "labels"
        for v in [r["value"]]
    )


def docs_screenshot(artifact: Path, out: Path, text: str = SENTENCE) -> dict:
    """The labeling page of ``text``'s task, predicted by the model at ``artifact``, to ``out``
    (the prediction's own tab selected; the labeling view alone, without the task list, at a
    1280x640 viewport and 2 device pixels a CSS pixel). Fails unless the page draws the
    prediction's evidence regions."""
    from label_studio import LabelStudio, cached
    from playwright.sync_api import sync_playwright
    from serving import ServerThread
    from visualizer_page import launch_chromium

    from gradlight.runtime.execution.engine import Engine
    from gradlight.runtime.serving.server import ServerSettings
    from gradlight.runtime.settings import EngineSettings

    engine = Engine(Path(artifact), EngineSettings(provider="cpu"))
    engine.warm_up()
    name = Path(artifact).resolve().name
    settings = ServerSettings(port=0, http_port=0)
    with (
        ServerThread({name: engine}, settings) as gradlight,
        LabelStudio(**cached()) as ls,
    ):
        url = f"{gradlight.http_url.rstrip('/')}/label-studio/{name}"
        project, [task] = predicted_project(ls, url, list(engine.labels), [text], title=name)
        [prediction] = ls.predictions(task["id"])
        expected = evidence_regions(prediction)
        regions = len(expected)
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                context = browser.new_context(viewport=DOCS_VIEWPORT, device_scale_factor=2)
                page = context.new_page()
                login(page, ls)
                open_task(page, ls.base_url, project, task["id"], regions)
                select_prediction(page, prediction["id"], regions)
                page.mouse.move(0, 0)
                out.parent.mkdir(parents=True, exist_ok=True)
                page.locator(LABELING).screenshot(path=str(out))
                shown = read_regions(page)
            finally:
                browser.close()
    if not set(expected) <= set(shown):
        raise SystemExit(f"the page shows {shown}, not the prediction's {expected}")
    return {"out": str(out), "prediction": prediction, "shown": [asdict(r) for r in shown]}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python tests/label_studio_page.py ARTIFACT_DIR OUT.png")
    made = docs_screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps(made, indent=1))
