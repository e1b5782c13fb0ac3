"""The visualizer page in real headless Chromium, against the real server, with what it must
not trust or give away: input text and label names from a hostile artifact are shown as text
and never run, and a server with tokens gets its token from a prompt (kept in the tab, never in
the URL, sent with every call). What the page draws: tests/test_visualizer_views.py."""

from __future__ import annotations

import json
import secrets
import urllib.parse

import pytest
from visualizer_actions import TEXT, drawn_items, explain_text

XSS = '<img src=x onerror=alert(1)> <script>alert(2)</script> "quoted" & done'


def test_input_text_is_shown_as_text_and_never_runs(page, tiny_server):
    page.goto(tiny_server.http_url)
    explain_text(page, XSS)
    view = page.text_content("#text-view")
    assert "<img src=x onerror=alert(1)>" in view and "<script>alert(2)</script>" in view
    assert page.query_selector("#text-view img, #text-view script, #sentences img") is None
    assert page.text_content("#sentences").startswith("<img src=x")
    # The same text arriving through a shared link is just as inert.
    page.goto(tiny_server.http_url + "#" + urllib.parse.urlencode({"text": XSS}))
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert page.query_selector("img") is None  # (and the fixture saw no dialog)


def test_a_server_with_tokens_gets_its_token_from_a_prompt(browser, engine_for, tmp_path):
    """With --auth-token-file the page asks for the token, says when it is refused, keeps it in
    the tab's sessionStorage (never in the URL) and sends it with every call; a refused
    explanation is retried once a token is given."""
    from serving import ServerThread

    from gradlight.runtime.serving.server import ServerSettings

    token = "page-" + secrets.token_urlsafe(24)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# the page's\n{token}\n")
    tokens.chmod(0o600)
    settings = ServerSettings(port=0, http_port=0, auth_token_file=tokens)
    with ServerThread({"bert": engine_for("bert")}, settings) as server:
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        problems, calls = _watched(page, server)
        try:
            _asks_for_a_token(page, server)
            _says_a_wrong_token_is_refused(page, token)
            expected = _explains_with_the_token_and_keeps_it(page, server, token)
            _asks_again_when_the_token_is_revoked(page, token, expected)
            # The tab keeps the token: a reload explains without asking.
            page.reload()
            page.wait_for_selector("body[data-state=done]", timeout=60_000)
            assert page.is_hidden("#auth")
            sent = [
                (call.url.removeprefix(server.http_url), call.all_headers().get("authorization"))
                for call in calls
            ]
        finally:
            context.close()
    bearer = f"Bearer {token}"
    assert sent == [
        ("v1/models", None),
        ("v1/models", f"Bearer wrong-{token}"),
        ("v1/models", bearer),
        ("v1/methods", bearer),
        ("v1/attribute", bearer),
        ("v1/attribute", "Bearer revoked-token"),
        ("v1/attribute", bearer),
        ("v1/models", bearer),
        ("v1/methods", bearer),
        ("v1/attribute", bearer),
    ]
    assert not problems, problems


def _watched(page, server):
    """(problems, calls), filled as the page runs: its errors and requests to anywhere but the
    server; its API calls to the server, in order."""
    problems: list[str] = []
    calls = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "request",
        lambda request: (
            calls.append(request)
            if request.url.startswith(server.http_url + "v1/")
            else None
            if request.url.startswith(server.http_url)
            else problems.append(f"external request: {request.url}")
        ),
    )
    return problems, calls


def _asks_for_a_token(page, server):
    page.goto(server.http_url + "#" + urllib.parse.urlencode({"text": TEXT}))
    page.wait_for_selector("body[data-state=auth]")
    assert page.is_visible("#auth") and page.get_attribute("#token", "type") == "password"
    assert "needs an access token" in page.text_content("#status")
    assert "UNAUTHENTICATED" in page.text_content("#status")


def _says_a_wrong_token_is_refused(page, token):
    page.evaluate("document.body.dataset.state = 'busy'")
    page.fill("#token", "wrong-" + token)
    page.click("#token-submit")
    page.wait_for_selector("body[data-state=auth]")
    assert "refused" in page.text_content("#status") and page.is_visible("#auth")


def _explains_with_the_token_and_keeps_it(page, server, token):
    """The right token: the page explains the text as gRPC does, and keeps the token in the
    tab's sessionStorage, not in the URL; returns gRPC's answer."""
    from gradlight.client import Client

    page.fill("#token", token)
    page.press("#token", "Enter")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert page.is_hidden("#auth")
    assert page.eval_on_selector_all("#model option", "o => o.map(x => x.value)") == ["bert"]
    with Client(server.address, token=token) as client:
        expected = client.attribute(
            [TEXT], model="bert", sentence_attributions=True, raw_scores=True
        ).results[0]
    assert page.text_content("#predicted") == expected.predicted_label
    items = drawn_items(page)
    assert len(items) == len(expected.tokens)
    column = list(expected.labels).index(expected.predicted_label)  # shown by default
    for (_, score, _, _), piece in zip(items, expected.tokens, strict=True):
        assert score == pytest.approx(piece.scores[column], abs=1e-5)
    assert page.evaluate("sessionStorage.getItem('gradlight.token')") == token
    assert token not in page.url
    return expected


def _asks_again_when_the_token_is_revoked(page, token, expected):
    """A token refused later (revoked): the explanation asks again, then goes through."""
    page.evaluate("state.token = 'revoked-token'")
    page.evaluate("document.body.dataset.state = 'busy'")
    page.click("#submit")
    page.wait_for_selector("body[data-state=auth]")
    assert page.is_visible("#auth")
    page.fill("#token", token)
    page.click("#token-submit")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert page.text_content("#predicted") == expected.predicted_label


def test_label_names_from_a_hostile_artifact_are_shown_as_text(browser, exported, tmp_path):
    """The artifact is input too: label names that are markup (the manifest rewritten; labels
    are names only, so the graphs still load) are shown, never run, in every place the page
    prints a label."""
    import shutil

    from serving import ServerThread

    from gradlight.runtime.execution.engine import Engine
    from gradlight.runtime.serving.server import ServerSettings
    from gradlight.runtime.settings import EngineSettings

    artifact = tmp_path / "hostile"
    shutil.copytree(exported("bert"), artifact)
    manifest = json.loads((artifact / "manifest.json").read_text())
    labels = ['<img src=x onerror=alert("a")>', "<script>alert('b')</script>", "c&amp;<b>d</b>"]
    manifest["labels"] = labels
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    engine = Engine(artifact, EngineSettings(provider="cpu"))
    with ServerThread({"bert": engine}, ServerSettings(port=0, http_port=0)) as server:
        context = browser.new_context()
        page = context.new_page()
        problems = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("dialog", lambda dialog: (problems.append(dialog.message), dialog.dismiss()))
        fragment = urllib.parse.urlencode({"text": TEXT, "label": labels[1], "versus": labels[0]})
        page.goto(server.http_url + "#" + fragment)
        page.wait_for_selector("body[data-state=done]", timeout=60_000)
        page.hover("#text-view .item:not(.special)")
        shown = page.text_content("body")
        for label in labels:
            assert label in shown
        options = page.eval_on_selector_all("#label option", "nodes => nodes.map(n => n.value)")
        assert options == labels
        assert page.query_selector("main img, main script, main b") is None
        context.close()
    assert not problems, problems
