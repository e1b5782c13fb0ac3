"""Terminal rendering of a result: tokens coloured by score (24-bit ANSI), or plain."""

from __future__ import annotations

from gradlight.client.palette import ink, shade
from gradlight.v1 import gradlight_pb2 as pb


def _background(score: float) -> str:
    """ANSI 24-bit background and text colours of ``score`` (client/palette.py's scale: blue
    toward the label, orange away from it)."""
    return "\x1b[48;2;{};{};{}m\x1b[38;2;{};{};{}m".format(*shade(score), *ink(score))


def render_tokens(result: pb.TextResult, label: str, *, color: bool) -> str:
    """The text with each token's surface coloured by its score for ``label``; text between
    tokens (spaces) is kept as written. Without colour, scores follow tokens in brackets."""
    column = list(result.labels).index(label)
    pieces = []
    position = 0
    for token in result.tokens:
        if token.special or token.end <= position:
            continue
        start = max(token.start, position)
        pieces.append(result.text[position:start])
        surface = result.text[start : token.end]
        score = token.scores[column]
        pieces.append(
            f"{_background(score)}{surface}\x1b[0m" if color else f"{surface}[{score:+.2f}]"
        )
        position = token.end
    pieces.append(result.text[position:])
    return "".join(pieces)


def render_result(result: pb.TextResult, label: str | None, *, color: bool) -> str:
    label = label or result.predicted_label
    lines = [f"predicted: {result.predicted_label}" + (" (truncated)" if result.truncated else "")]
    lines.extend(
        f"  {name:<20} {probability:.4f}"
        for name, probability in zip(result.labels, result.probabilities, strict=True)
    )
    if result.tokens:
        lines.append(f"tokens, coloured for label {label!r} (blue: toward, orange: away):")
        lines.append("  " + render_tokens(result, label, color=color))
    if result.sentences:
        column = list(result.labels).index(label)
        lines.append(f"sentences, p({label}) minus p({label} without the sentence):")
        lines.extend(
            f"  {sentence.scores[column]:+.4f}  {sentence.sentence}"
            for sentence in result.sentences
        )
    return "\n".join(lines)
