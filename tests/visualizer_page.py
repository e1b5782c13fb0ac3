"""Debian's Chromium (/usr/bin/chromium) driven by Playwright, for every browser test: the one
definition of its path and launch arguments (also used by the ``browser`` fixture in conftest.py
for tests/test_visualizer_*.py), and the visualizer page alone, for tests that run its JavaScript
functions: served at a made-up origin with the Content-Security-Policy the server sends
(runtime/serving/web.py's Page), with no model behind it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ORIGIN = "http://visualizer.test/"


def require_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("GRADLIGHT_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing but GRADLIGHT_REQUIRE_BROWSER is set (CI)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)")


def launch_chromium(playwright: Any) -> Any:
    """Chromium, headless, launched by a running Playwright (``sync_playwright()``)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)


@contextmanager
def standalone_page() -> Iterator[Any]:
    """A Playwright page with the visualizer loaded and ready (its script ran, with an empty
    model list); page errors fail the test."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    from gradlight.runtime.serving.web import Page
    from gradlight.wire.methods import as_json

    served = Page.load()

    def answer(route: Any) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        if path == "":
            route.fulfill(
                status=200,
                headers={"Content-Security-Policy": served.csp},
                content_type="text/html; charset=utf-8",
                body=served.html,
            )
        elif path == "v1/models":
            route.fulfill(status=200, content_type="application/json", body='{"models": []}')
        elif path == "v1/methods":  # the registry, as the server answers it
            route.fulfill(status=200, content_type="application/json", body=json.dumps(as_json()))
        else:
            route.fulfill(status=404, content_type="application/json", body=json.dumps({}))

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.route("**/*", answer)
            page.goto(ORIGIN)
            page.wait_for_selector("body[data-state=ready]")
            yield page
            assert not problems, problems
        finally:
            browser.close()
