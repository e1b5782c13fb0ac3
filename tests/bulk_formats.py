"""Checks of bulk output against the annotation tools' documented task formats.

Prodigy (https://prodi.gy/docs/api-interfaces, /docs/api-loaders): a task has ``text`` (or
``html``); ``spans`` of ``{start, end, label}`` with character offsets, end exclusive (other
keys allowed); ``html`` for the ``html`` interface; ``options`` of ``{id, text}`` and
``accept`` (ids of the chosen options) for the ``choice`` interface; ``meta`` an object.
No validator of Prodigy's own is public, so the schema below is written from those pages.

Label Studio (https://labelstud.io/guide/predictions, /guide/task_format): a task is
``{"data": {...}, "predictions": [{"model_version", "score", "result": [...]}]}``; each result
region has ``id``, ``from_name`` (a control tag's name), ``to_name`` (that tag's ``toName``),
``type`` (the control's tag in lower case: ``labels``, ``choices``) and ``value``
(``{start, end, text, labels}`` for text spans, ``{choices}`` for a classification), with an
optional ``score``. The checks follow what Label Studio's SDK validates (its
``LabelInterface.validate_prediction``), plus the offsets it does not check.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import jsonschema

PRODIGY_TASK = {
    "type": "object",
    "required": ["text", "spans", "html", "options", "accept", "meta"],
    "properties": {
        "text": {"type": "string"},
        "html": {"type": "string"},
        "spans": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["start", "end", "label"],
                "properties": {
                    "start": {"type": "integer", "minimum": 0},
                    "end": {"type": "integer", "minimum": 0},
                    "label": {"type": "string", "minLength": 1},
                    "token_start": {"type": "integer"},
                    "token_end": {"type": "integer"},
                    "score": {"type": "number"},
                    "color": {"type": "string", "pattern": "^#[0-9a-f]{6}$"},
                },
            },
        },
        "options": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "text"],
                "properties": {"id": {"type": ["string", "integer"]}, "text": {"type": "string"}},
            },
        },
        "accept": {"type": "array", "items": {"type": ["string", "integer"]}},
        "meta": {"type": "object"},
        "_input_hash": {"type": "integer"},
        "_task_hash": {"type": "integer"},
    },
}


class _Text(HTMLParser):
    """The text an HTML fragment shows (``<br>`` as a line break); fails on unclosed tags."""

    VOID = frozenset({"br", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.open: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "br":
            self.parts.append("\n")
        if tag in ("script", "iframe", "object") or any(k.startswith("on") for k, _ in attrs):
            self.scripts += 1
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data):
        self.parts.append(data)


def html_text(fragment: str) -> tuple[str, list[str]]:
    """What ``fragment`` shows, and its paragraphs' texts (``<p>`` elements)."""
    parser = _Text()
    parser.feed(fragment)
    parser.close()
    assert not parser.open, f"unclosed {parser.open}"
    assert parser.scripts == 0, "the fragment runs code"
    paragraphs = re.findall(r'<p style="line-height:1.9">(.*?)</p>', fragment, flags=re.S)
    texts = []
    for paragraph in paragraphs:
        inner = _Text()
        inner.feed(paragraph)
        inner.close()
        texts.append("".join(inner.parts))
    return "".join(parser.parts), texts


def check_prodigy(task: dict, labels: list[str]) -> None:
    jsonschema.validate(task, PRODIGY_TASK)
    text = task["text"]
    for span in task["spans"]:
        assert 0 <= span["start"] < span["end"] <= len(text), span
    option_ids = [option["id"] for option in task["options"]]
    assert option_ids == labels
    assert set(task["accept"]) <= set(option_ids)
    _, paragraphs = html_text(task["html"])
    assert paragraphs, "no highlighted paragraph"
    for paragraph in paragraphs:
        assert paragraph in text  # the highlighted text is the text (or a window of it)


def check_label_studio(task: dict, config: str) -> None:
    """A task against the labeling config, as Label Studio reads it."""
    root = ET.fromstring(config)
    objects = {tag.get("name"): tag for tag in root.iter() if tag.get("value", "").startswith("$")}
    controls = {tag.get("name"): tag for tag in root.iter() if tag.get("toName")}
    assert set(task) <= {"data", "predictions", "annotations", "meta", "id"}
    data = task["data"]
    for name, tag in objects.items():
        assert tag.get("value")[1:] in data, f"data lacks ${name}"
    text = data["text"]
    for prediction in task["predictions"]:
        assert isinstance(prediction["model_version"], str) and prediction["model_version"]
        assert 0.0 <= prediction["score"] <= 1.0
        ids = [region["id"] for region in prediction["result"]]
        assert len(ids) == len(set(ids)), "region ids repeat"
        for region in prediction["result"]:
            control = controls.get(region["from_name"])
            assert control is not None, f"no control named {region['from_name']!r}"
            assert region["to_name"] == control.get("toName")
            assert region["type"] == control.tag.lower()
            assert 0.0 <= region.get("score", 0.0) <= 1.0
            value = region["value"]
            if control.tag == "Labels":
                allowed = {label.get("value") for label in control.iter("Label")}
                assert set(value) == {"start", "end", "text", "labels"}
                assert 0 <= value["start"] < value["end"] <= len(text)
                assert value["text"] == text[value["start"] : value["end"]]
                assert value["labels"] and set(value["labels"]) <= allowed
            else:
                assert control.tag == "Choices"
                allowed = {choice.get("value") for choice in control.iter("Choice")}
                assert set(value) == {"choices"}
                assert value["choices"] and set(value["choices"]) <= allowed
                if control.get("choice", "single") == "single":
                    assert len(value["choices"]) == 1


def assert_same_records(got: list[dict], expected: list[dict], tolerance: float = 1e-3) -> None:
    """The same records line for line, numbers equal within ``tolerance``. ONNX Runtime's
    results move in the last float bits with how rows are batched together (which depends on
    timing), so a figure written to 4 places can differ in its last place, and evidence near
    the cut-off for negligible scores can appear on one side only (then it is under
    ``tolerance``)."""
    assert len(got) == len(expected)
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        _same(a, b, f"record {index}", tolerance)


def _same(a, b, where: str, tolerance: float) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}", tolerance)
    elif isinstance(a, list) and isinstance(b, list):
        if a and isinstance(a[0], dict) and {"start", "end", "score"} <= a[0].keys():
            a_by, b_by = ({(e["start"], e["end"]): e for e in side} for side in (a, b))
            for key in a_by.keys() ^ b_by.keys():
                only = a_by.get(key) or b_by[key]
                assert abs(only["score"]) < tolerance, f"{where}: {only} on one side"
            for key in a_by.keys() & b_by.keys():
                _same(a_by[key], b_by[key], f"{where}{list(key)}", tolerance)
            return
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{index}]", tolerance)
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(a - b) <= tolerance, f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
