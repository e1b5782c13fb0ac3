"""What the visualizer tests share (tests/test_visualizer_views.py, test_visualizer_links.py,
test_visualizer_safety.py, test_visualizer_windows.py) on a page served by a real server:
explaining a text as a user does, reading the drawn items and their colours, the scores the
page should show (gRPC's answer, normalized), and where screenshots and the timings seen in the
browser go. The ``browser`` and ``page`` fixtures are in conftest.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

OUTPUT = Path(os.environ.get("GRADLIGHT_TEST_OUTPUT", Path(__file__).parents[1] / "test-output"))
TEXT = (
    "The patient denies chest pain. Cannot rule out pneumonia on the chest x-ray. "
    "She reports worsening cough."
)


def explain_text(page, text, model="bert", **options):
    """Choose the model, type the text, set the ``#opt-*`` options, press Control+Enter and
    wait for the answer."""
    page.select_option("#model", model)
    page.fill("#text", text)
    for option, checked in options.items():
        page.set_checked(f"#opt-{option}", checked)
    page.evaluate("document.body.dataset.state = 'busy'")
    page.focus("#text")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)


def choose_method(page, method, **settings):
    """Choose the attribution method (``#method``) and fill its visible settings (``steps``,
    ``samples``, ``baseline``: the inputs of those ids)."""
    page.select_option("#method", method)
    for name, value in settings.items():
        if name == "baseline":
            page.select_option("#baseline", value)
        else:
            page.fill(f"#{name}", str(value))


def shown_value(page, selector):
    """The exact number behind a value the page shows rounded (its ``data-value``)."""
    return float(page.get_attribute(selector, "data-value"))


def drawn_items(page):
    """(text, data-score, background rgb, special) of every drawn item, in order."""
    return page.eval_on_selector_all(
        "#text-view .item",
        """nodes => nodes.map(node => [node.textContent, Number(node.dataset.score),
            getComputedStyle(node).backgroundColor, node.classList.contains('special')])""",
    )


def rgb(css):
    return tuple(int(value) for value in re.findall(r"\d+", css)[:3])


def normalize(values):
    values = np.asarray(values, dtype=np.float64)
    peak = np.abs(values).max(axis=-1, keepdims=True)
    return np.where(peak > 0, values / np.where(peak > 0, peak, 1), 0.0)


def grpc_result(tiny_client, text, model="bert"):
    return tiny_client.attribute(
        [text], model=model, sentence_attributions=True, raw_scores=True
    ).results[0]


def record_timing(name, value):
    """Timings seen in the browser, written next to the screenshots (not asserted)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / "visualizer-timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = value
    path.write_text(json.dumps(data, indent=2) + "\n")
