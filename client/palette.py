"""The colour scale of scores, the one definition for the terminal (client/render.py) and the
bulk formats (bulk/formats.py); the visualizer's ``colour()``
(runtime/serving/visualizer/index.html)
computes the same colours (tests/test_palette.py runs it in a browser and compares).

A diverging scale, readable for the common colour-vision deficiencies: white at 0, blue for a
score toward a label (full at +1), orange for one away from it (full at -1); text on it is white
where the colour is dark, black elsewhere. Nothing here imports the runtime.
"""

from __future__ import annotations

import math

RGB = tuple[int, int, int]

TOWARD: RGB = (33, 102, 172)  # blue, +1
AWAY: RGB = (230, 97, 1)  # orange, -1
WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)


def shade(score: float) -> RGB:
    """The colour of ``score``: white blended toward TOWARD (score >= 0) or AWAY by |score|,
    clipped to 1."""
    strength = min(1.0, abs(score))
    target = TOWARD if score >= 0 else AWAY
    r, g, b = (_round_half_up(255 + (channel - 255) * strength) for channel in target)
    return r, g, b


def ink(score: float) -> RGB:
    """The colour of text on ``shade(score)``: white where its relative luminance (Rec. 709
    weights) is under one half, else black."""
    r, g, b = shade(score)
    return WHITE if (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255 < 0.5 else BLACK


def hex_colour(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _round_half_up(value: float) -> int:
    """Rounded as JavaScript's Math.round rounds (halves up), not as ``round`` (halves to even),
    so that the page and Python agree on every channel (``value`` >= 0 here)."""
    whole = math.floor(value)
    return whole + (value - whole >= 0.5)
