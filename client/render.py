"""Terminal rendering of a result: tokens coloured by score (24-bit ANSI), or plain."""

from __future__ import annotations

from gradlight.client.palette import ink, shade
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.wire.methods import METHODS_BY_NAME


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
    read = " (truncated)" if result.truncated else ""
    if len(result.windows) > 1:
        read = f" ({result.aggregation} of {len(result.windows)} windows' logits)"
    lines = [f"predicted: {result.predicted_label}{read}"]
    lines.extend(
        f"  {name:<20} {probability:.4f}"
        for name, probability in zip(result.labels, result.probabilities, strict=True)
    )
    lines.extend(_windows(result))
    if result.tokens:
        method = f" by {result.method}" if result.method else ""
        lines.append(f"tokens{method}, coloured for label {label!r} (blue: toward, orange: away):")
        lines.append("  " + render_tokens(result, label, color=color))
        lines.extend(_method_figures(result, label))
    if result.sentences:
        column = list(result.labels).index(label)
        lines.append(f"sentences, p({label}) minus p({label} without the sentence):")
        lines.extend(
            f"  {sentence.scores[column]:+.4f}  {sentence.sentence}"
            for sentence in result.sentences
        )
    return "\n".join(lines)


MAX_WINDOWS_SHOWN = 10


def _windows(result: pb.TextResult) -> list[str]:
    """A text read as windows: per window (the first ``MAX_WINDOWS_SHOWN``), the characters
    it reads, those whose token scores it gives, and its own prediction (none for a text read
    in one window: its figures are the text's)."""
    if len(result.windows) < 2:
        return []
    labels = list(result.labels)
    lines = ["windows: characters read [whose token scores it gives], its prediction:"]
    for number, window in enumerate(result.windows[:MAX_WINDOWS_SHOWN], 1):
        scored = "none"
        if window.scored_end > window.scored_start:
            scored = f"{window.scored_start}-{window.scored_end}"
        said = f"  {number:>3}  {window.start}-{window.end} [{scored}]  {window.predicted_label}"
        if window.predicted_label in labels:  # its probabilities follow the labels asked
            said += f" {window.probabilities[labels.index(window.predicted_label)]:.4f}"
        lines.append(said)
    if len(result.windows) > MAX_WINDOWS_SHOWN:
        lines.append(f"  ... {len(result.windows) - MAX_WINDOWS_SHOWN} more")
    return lines


def _method_figures(result: pb.TextResult, label: str) -> list[str]:
    """For ``label``: the completeness gap (path methods) with the steps or samples used and
    whether a completeness tolerance was missed, the faithfulness figures (when asked) and the
    seed that reproduces them."""
    column = list(result.labels).index(label)
    lines = []
    if result.completeness_gaps:
        gap = result.completeness_gaps[column]
        lines.append(
            f"completeness gap: {gap:+.4f} (sum of raw scores - logit change){_points(result)}"
        )
    if result.HasField("faithfulness"):
        found = result.faithfulness
        lines.append(
            f"faithfulness over {found.words} words (AOPC; random ranking in brackets): "
            f"comprehensiveness {found.comprehensiveness[column]:+.4f} "
            f"({found.random_comprehensiveness[column]:+.4f}), sufficiency "
            f"{found.sufficiency[column]:+.4f} ({found.random_sufficiency[column]:+.4f})"
        )
    if result.seed or result.method == "gradient_shap" or result.HasField("faithfulness"):
        lines.append(f"seed: {result.seed}")
    return lines


def _points(result: pb.TextResult) -> str:
    """`` at 16 steps`` (the points the path method used), and the mark of a completeness
    tolerance not reached at the most steps."""
    method = METHODS_BY_NAME.get(result.method)
    said = ""
    if result.steps and method is not None and method.points:
        said = f" at {result.steps} {method.points}"
    if result.tolerance_missed:
        said += "; tolerance not reached at the most steps (some label's gap is above it)"
    return said
