"""One colour scale (client/palette.py): the terminal renderer and the bulk formats use it, and
the visualizer's JavaScript gives the same colours, evaluated in real headless Chromium."""

from __future__ import annotations

import re

import numpy as np
import pytest
from visualizer_page import standalone_page

from gradlight.bulk import formats
from gradlight.client import palette
from gradlight.client.render import render_result
from gradlight.v1 import gradlight_pb2 as pb

SCORES = sorted(
    {
        *np.linspace(-1.25, 1.25, 2001).tolist(),
        # Scores whose channel values fall half-way between integers (JavaScript rounds up).
        *(
            sign * (2 * n + 1) / (2 * (255 - c))
            for c, sign in [(c, 1) for c in palette.TOWARD] + [(c, -1) for c in palette.AWAY]
            for n in range(255 - c)
        ),
        0.5,
        -0.5,
        0.0,
        -0.0,
        1e-12,
        -1e-12,
        float("inf"),
        float("-inf"),
    }
)


def test_the_scale():
    assert palette.shade(0.0) == palette.WHITE == palette.shade(-0.0)
    assert palette.shade(1.0) == palette.TOWARD == palette.shade(7.0) == (33, 102, 172)
    assert palette.shade(-1.0) == palette.AWAY == palette.shade(-7.0) == (230, 97, 1)
    assert palette.shade(0.5) == (144, 179, 214)  # 178.5 rounds up, as in JavaScript
    assert palette.ink(1.0) == palette.WHITE and palette.ink(0.1) == palette.BLACK
    assert palette.ink(-1.0) == palette.WHITE and palette.ink(-0.3) == palette.BLACK
    for score in SCORES:
        r, g, b = palette.shade(score)
        target = palette.TOWARD if score >= 0 else palette.AWAY
        assert all(min(c, 255) <= v <= max(c, 255) for v, c in zip((r, g, b), target, strict=True))


def test_the_bulk_formats_use_it():
    for score in SCORES:
        assert formats.shade(score) == "#{:02x}{:02x}{:02x}".format(*palette.shade(score))
        assert formats._ink(score) == ("#fff" if palette.ink(score) == palette.WHITE else "#000")


def test_the_terminal_uses_it():
    result = pb.TextResult(
        text="No chest pain",
        labels=["absent", "present"],
        probabilities=[0.9, 0.1],
        predicted_label="absent",
    )
    for start, end, score in [(0, 2, 1.0), (3, 8, -0.6), (9, 13, 0.2)]:
        result.tokens.add(token="t", start=start, end=end, scores=[score, -score])
    shown = render_result(result, None, color=True)
    assert "(blue: toward, orange: away)" in shown and "red:" not in shown
    colours = re.findall(r"\x1b\[48;2;(\d+);(\d+);(\d+)m\x1b\[38;2;(\d+);(\d+);(\d+)m", shown)
    assert [tuple(map(int, c)) for c in colours] == [
        palette.shade(s) + palette.ink(s) for s in (1.0, -0.6, 0.2)
    ]


@pytest.fixture(scope="module")
def page():
    with standalone_page() as page:
        yield page


def test_the_page_gives_the_same_colours(page):
    assert page.evaluate("[POS, NEG]") == [list(palette.TOWARD), list(palette.AWAY)]
    css = page.evaluate(
        """() => {
            const root = getComputedStyle(document.documentElement);
            const scale = getComputedStyle(document.querySelector('#legend .scale'));
            return [root.getPropertyValue('--pos'), root.getPropertyValue('--neg'),
                    scale.backgroundImage];
        }"""
    )
    pos, neg, gradient = css
    assert pos.strip() == "rgb({}, {}, {})".format(*palette.TOWARD)
    assert neg.strip() == "rgb({}, {}, {})".format(*palette.AWAY)
    assert gradient.startswith("linear-gradient(to right, rgb({}, {}, {})".format(*palette.AWAY))
    assert gradient.endswith("rgb({}, {}, {}))".format(*palette.TOWARD))
    got = page.evaluate("scores => scores.map((s) => colour(s))", SCORES)
    for score, shown in zip(SCORES, got, strict=True):
        ink = "#fff" if palette.ink(score) == palette.WHITE else "#000"
        assert shown == {"background": "rgb({}, {}, {})".format(*palette.shade(score)), "ink": ink}
