"""The visualizer page in real headless Chromium, against the real server: what leaves the
page and comes back. The URL reopens the same view, a new link in the same tab explains the new
text, the JSON download is the API's answer, and an entity selected in the text is classified
on its own (the browser's UTF-16 selection becoming a code point span) and reopened by its
link. What the page draws: tests/test_visualizer_views.py."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
from visualizer_actions import OUTPUT, TEXT, drawn_items, explain_text


def test_the_url_reopens_the_same_view(page, browser, tiny_server):
    page.goto(tiny_server.http_url)
    explain_text(page, TEXT, model="roberta", sentences=False)
    page.select_option("#label", "label_1")
    page.check('input[name="view"][value="words"]')
    link = page.url
    items = drawn_items(page)
    other = browser.new_page()
    try:
        other.goto(link)
        other.wait_for_selector("body[data-state=done]", timeout=60_000)
        assert other.input_value("#text") == TEXT
        assert other.input_value("#model") == "roberta"
        assert other.input_value("#label") == "label_1"
        assert other.is_checked('input[name="view"][value="words"]')
        assert not other.is_checked("#opt-sentences")
        assert drawn_items(other) == items
        assert other.is_hidden("#sentence-section")
    finally:
        other.close()


def test_an_entity_selected_in_the_text_is_classified_on_its_own(page, browser, tiny_server):
    """The selection (UTF-16 in the browser) becomes a code point span; the page shows the
    span's answer, equal to gRPC's, with the markers where they were inserted, the span
    underlined and the text outside the context window greyed; the link reopens it."""
    text = "😀 Note: the patient denies chest pain today. Cough resolved last week, no fever."
    start = text.index("chest pain")  # code points; the emoji is two UTF-16 units
    end = start + len("chest pain")
    _select_the_entity_and_explain(page, tiny_server, text, start, end)
    expected = _served_entity(tiny_server, text, start, end)
    items = _shows_the_served_entity(page, expected)
    page.screenshot(path=str(OUTPUT / "visualizer-entity.png"))
    _the_markers_enclose_the_span(page)
    _the_text_outside_the_context_is_grey(page, text, expected)
    link = page.url
    assert f"entity={start}-{end}" in link
    _the_link_reopens_the_entity(browser, link, items)


def _select_the_entity_and_explain(page, tiny_server, text, start, end):
    """Select [start, end) in the text box (UTF-16: the emoji counts twice), use it as the
    entity, with the markers "[E]" and "</e>" and a 12-character context."""
    page.goto(tiny_server.http_url)
    page.wait_for_selector("body[data-state=ready]")
    page.select_option("#model", "bert")
    page.fill("#text", text)
    page.eval_on_selector(
        "#text", "(area, span) => area.setSelectionRange(...span)", [start + 1, end + 1]
    )
    page.click("#entity-use")
    assert "chest pain" in page.text_content("#entity-shown")
    page.fill("#marker-open", "[E]")
    page.fill("#context-chars", "12")
    page.evaluate("document.body.dataset.state = 'busy'")
    page.click("#submit")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)


def _served_entity(tiny_server, text, start, end):
    """gRPC's answer for the same span with the same markers and context."""
    from gradlight.client import Client

    with Client(tiny_server.address) as client:
        return client.attribute(
            [text], model="bert", entities=[[(start, end)]], markers=("[E]", "</e>"),
            context_chars=12, sentence_attributions=True, raw_scores=True,
        ).results[0].entities[0]  # fmt: skip


def _shows_the_served_entity(page, expected):
    """The page's prediction and scores are gRPC's, the span underlined, the markers drawn
    where they were inserted; returns the drawn items."""
    assert page.text_content("#predicted") == expected.result.predicted_label
    assert "chest pain" in page.text_content("#predicted-for")
    items = drawn_items(page)
    assert len(items) == len(expected.result.tokens)
    for (_, score, _, special), token in zip(items, expected.result.tokens, strict=True):
        assert special == token.special
        assert score == pytest.approx(token.scores[0], abs=1e-5)
    underlined = page.eval_on_selector_all(".item.entity", "n => n.map(x => x.textContent)")
    assert "".join(underlined) == "chestpain"
    markers = page.eval_on_selector_all(".item.marker", "n => n.map(x => x.textContent)")
    assert markers == [token.token for token in expected.result.tokens if token.marker]
    assert markers  # "[E]" and "</e>" in the tiny WordPiece vocabulary's pieces
    return items


def _the_markers_enclose_the_span(page):
    kinds = page.eval_on_selector_all(
        "#text-view .item",
        """n => n.map(x => x.classList.contains('marker') ? 'M'
            : x.classList.contains('entity') ? 'E' : '.')""",
    )
    first, last = kinds.index("E"), len(kinds) - 1 - kinds[::-1].index("E")
    assert set(kinds[first : last + 1]) == {"E"}  # the span's pieces, together
    assert kinds[first - 1] == "M" and kinds[last + 1] == "M"  # the markers enclose it


def _the_text_outside_the_context_is_grey(page, text, expected):
    grey = "".join(
        page.eval_on_selector_all("#text-view .unscored", "n => n.map(x => x.textContent)")
    )
    outside = text[: expected.context_start] + text[expected.context_end :]
    assert grey.replace(" ", "") == outside.replace(" ", "")


def _the_link_reopens_the_entity(browser, link, items):
    other = browser.new_page()
    try:
        other.goto(link)
        other.wait_for_selector("body[data-state=done]", timeout=60_000)
        assert other.input_value("#marker-open") == "[E]"
        assert drawn_items(other) == items
    finally:
        other.close()


def test_download_is_the_apis_json(page, tiny_server):
    page.goto(tiny_server.http_url)
    explain_text(page, TEXT)
    with page.expect_download() as info:
        page.click("#download")
    downloaded = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert downloaded["model"] == "bert"
    result = downloaded["results"][0]
    assert result["text"] == TEXT
    assert result["predicted_label"] == page.text_content("#predicted")
    assert len(result["tokens"]) == len(drawn_items(page)) and len(result["sentences"]) == 3


def test_a_new_link_in_the_same_tab_explains_the_new_text(page, tiny_server):
    page.goto(tiny_server.http_url + "#" + urllib.parse.urlencode({"text": TEXT}))
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    page.evaluate("document.body.dataset.state = 'busy'")
    other = "She reports worsening cough."
    page.evaluate(f"location.hash = {json.dumps(urllib.parse.urlencode({'text': other}))}")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert page.input_value("#text") == other
    assert "She reports" in page.text_content("#text-view")
    assert "denies" not in page.text_content("#text-view")
