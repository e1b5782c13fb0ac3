"""The visualizer page in real headless Chromium, against the real server, with texts longer
than the model's window: the form's ``long_texts`` (unset unless chosen), a text read as
windows drawn whole with its token colours, and its windows shown on request (a marker where
each window after the first begins scoring tokens, a table of the windows, the aggregation rule
by the prediction). The tiny models read 64 tokens."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from visualizer_actions import OUTPUT, TEXT, drawn_items, explain_text

# ~130 tokens of the tiny BERT: 4 windows of 62 text tokens, one every 31. The emoji (two UTF-16
# units, one code point) comes before every boundary, so a UTF-16 offset would be off by one.
LONG = " ".join(["The patient \U0001f642 denies chest pain.", *[TEXT] * 5])

# The text the page draws before each window marker: every node before it but special tokens.
TEXT_BEFORE_MARKS = """view => {
    const before = [];
    let text = "";
    const walk = (node) => {
        for (const child of node.childNodes) {
            if (child.nodeType === Node.TEXT_NODE) text += child.data;
            else if (child.classList.contains("window-mark")) before.push(text);
            else if (!child.classList.contains("special")) walk(child);
        }
    };
    walk(view);
    return {before, text};
}"""


def _sent_bodies(page):
    """The bodies the page posts to v1/attribute, filled as it runs."""
    bodies = []
    page.on(
        "request",
        lambda request: (
            bodies.append(json.loads(request.post_data))
            if request.url.endswith("/v1/attribute")
            else None
        ),
    )
    return bodies


def _visible_marks(page):
    return [node.is_visible() for node in page.query_selector_all("#text-view .window-mark")]


def test_a_long_text_read_as_windows_is_drawn_whole_with_its_windows_on_request(
    page, tiny_server, tiny_client
):
    bodies = _sent_bodies(page)
    page.goto(tiny_server.http_url)
    page.wait_for_selector("body[data-state=ready]")
    page.select_option("#long-texts", "windows")
    explain_text(page, LONG, sentences=False)
    assert bodies[-1]["long_texts"] == "windows"
    expected = tiny_client.attribute(
        [LONG], model="bert", long_texts="windows", raw_scores=True
    ).results[0]
    windows = list(expected.windows)
    assert len(windows) >= 3 and not expected.truncated

    # The whole text, one item per token (WordPiece), coloured by the predicted label's scores.
    assert page.text_content("#predicted") == expected.predicted_label
    items = drawn_items(page)
    assert len(items) == len(expected.tokens)
    column = list(expected.labels).index(expected.predicted_label)
    for (_, score, _, _), token in zip(items, expected.tokens, strict=True):
        assert score == pytest.approx(token.scores[column], abs=1e-5)
    drawn = page.eval_on_selector("#text-view", TEXT_BEFORE_MARKS)
    assert drawn["text"] == LONG and not page.query_selector("#text-view .unscored")
    assert page.is_hidden("#truncated")
    rule = page.text_content("#aggregation")
    assert f"{len(windows)} windows" in rule and f"by {expected.aggregation}" in rule

    # Windows hidden by default: the markers are there but not shown, nor is the table.
    assert page.is_visible("#windows-toggle") and not page.is_checked("#show-windows")
    assert _visible_marks(page) == [False] * (len(windows) - 1)
    assert page.is_hidden("#windows-section")

    page.check("#show-windows")
    assert _visible_marks(page) == [True] * (len(windows) - 1)
    _marks_at_the_scored_starts(page, windows, expected.labels)
    _table_lists_the_windows(page, windows, expected)
    last = len(expected.tokens) - 2  # the last before [SEP]: scored by the last window
    page.hover(f"#text-view .item[data-item='{last}']")
    assert f"scores from window {len(windows)} of {len(windows)}" in page.text_content("#tooltip")
    assert "windows=1" in page.url and "long_texts=windows" in page.url
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / "visualizer-windows.png"), full_page=True)
    # The link reopens the view: read as windows, the windows shown.
    page.reload()
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert page.input_value("#long-texts") == "windows" and page.is_checked("#show-windows")
    assert _visible_marks(page) == [True] * (len(windows) - 1)

    # The words view keeps the markers, each before the word that holds the boundary.
    page.check('input[name="view"][value="words"]')
    before = page.eval_on_selector("#text-view", TEXT_BEFORE_MARKS)["before"]
    assert len(before) == len(windows) - 1
    for text, window in zip(before, windows[1:], strict=True):
        assert LONG.startswith(text) and len(text) <= window.scored_start
        assert " " not in LONG[len(text) : window.scored_start]

    page.uncheck("#show-windows")
    assert _visible_marks(page) == [False] * (len(windows) - 1)
    assert page.is_hidden("#windows-section") and "windows=1" not in page.url

    # Without token scores: the text plain, no markers; the windows still listed.
    explain_text(page, LONG, tokens=False, sentences=False)
    assert page.text_content("#text-view") == LONG
    page.check("#show-windows")
    assert page.query_selector("#text-view .window-mark") is None
    assert len(page.query_selector_all("#windows tbody tr")) == len(windows)


def _marks_at_the_scored_starts(page, windows, labels):
    """One marker per window after the first, just before the character its scores begin at
    (code points), titled with the window's span and own prediction."""
    page.check('input[name="view"][value="tokens"]')
    marks = page.eval_on_selector_all(
        "#text-view .window-mark",
        """nodes => nodes.map(node => [node.dataset.window, Number(node.dataset.at), node.title,
            node.getAttribute('role'), node.getAttribute('aria-label')])""",
    )
    before = page.eval_on_selector("#text-view", TEXT_BEFORE_MARKS)["before"]
    assert len(marks) == len(before) == len(windows) - 1
    for index, (mark, text, window) in enumerate(
        zip(marks, before, windows[1:], strict=True), start=2
    ):
        number, at, title, role, label = mark
        assert (number, at) == (str(index), window.scored_start)
        assert text == LONG[: window.scored_start]
        p = window.probabilities[list(labels).index(window.predicted_label)]
        assert title == label and role == "separator"
        assert f"Window {index} of {len(windows)}" in title
        assert f"{window.start}\u2013{window.end}" in title
        assert f"predicts {window.predicted_label} (p {p:.4f})" in title


def _table_lists_the_windows(page, windows, expected):
    """A row per window: its number, span, scored span, prediction and p of the shown label."""
    assert page.is_visible("#windows-section")
    rows = page.eval_on_selector_all(
        "#windows tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    column = list(expected.labels).index(expected.predicted_label)
    assert rows == [
        [
            str(index),
            f"{window.start}\u2013{window.end}",
            f"{window.scored_start}\u2013{window.scored_end}",
            window.predicted_label,
            f"{window.probabilities[column]:.4f}",
        ]
        for index, window in enumerate(windows, start=1)
    ]
    assert page.text_content("#windows-p") == f"p({expected.predicted_label})"
    assert page.is_hidden("#windows-gap")  # input x gradient: no completeness gaps
    other = next(label for label in expected.labels if label != expected.predicted_label)
    page.select_option("#label", other)
    shown = page.eval_on_selector_all(
        "#windows tbody tr", "rows => rows.map(r => r.cells[4].textContent)"
    )
    k = list(expected.labels).index(other)
    assert shown == [f"{window.probabilities[k]:.4f}" for window in windows]
    page.select_option("#label", expected.predicted_label)


def test_a_short_text_shows_no_window_ui_and_the_form_sends_the_servers_default(page, tiny_server):
    bodies = _sent_bodies(page)
    page.goto(tiny_server.http_url)
    page.wait_for_selector("body[data-state=ready]")
    assert page.input_value("#long-texts") == ""
    explain_text(page, TEXT, sentences=False)
    assert "long_texts" not in bodies[-1]  # the server's default
    page.select_option("#long-texts", "windows")
    explain_text(page, TEXT, sentences=False)
    assert bodies[-1]["long_texts"] == "windows"
    assert page.is_hidden("#windows-toggle") and page.is_hidden("#windows-section")
    assert page.is_hidden("#aggregation") and page.text_content("#aggregation") == ""
    assert page.query_selector("#text-view .window-mark") is None
    # A link keeps the choice.
    assert urllib.parse.parse_qs(page.url.split("#", 1)[1])["long_texts"] == ["windows"]
