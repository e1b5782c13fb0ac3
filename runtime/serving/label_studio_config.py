"""The check of a Label Studio project's labeling config against a served model (``/setup`` of
the Label Studio backend, label_studio.py): the config must have the tags that the predictions'
regions name (label_studio_tasks.py), else a RequestError on the field ``schema`` names what
is missing or extra.

- ``<Text name="text" value="$text"/>``;
- ``<Choices name="label" toName="text">`` whose ``Choice`` values are the model's labels;
- ``<Labels name="evidence" toName="text">`` with the grades (strong, moderate, weak, against);
- with sentence regions asked, ``<Labels name="sentence" toName="text">`` with the same grades.

The XML is parsed with the standard library only after it is found to be at most
``MAX_CONFIG_CHARS`` long and to have no document type declaration (so no entities: nothing can
expand or load from elsewhere).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from gradlight.runtime.serving import label_studio_tasks as ls
from gradlight.wire.errors import RequestError

FIELD = "schema"
MAX_CONFIG_CHARS = 256 * 1024
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_HOW = "`gradlight label-config` prints the config this model's predictions fit"


def _fail(description: str) -> RequestError:
    return RequestError(FIELD, f"{description}; {_HOW}")


def parse_config(config: str) -> ET.Element:
    """The root of a labeling config; RequestError when too long, with a DOCTYPE or ENTITY, or
    not well-formed XML."""
    if len(config) > MAX_CONFIG_CHARS:
        raise RequestError(
            FIELD, f"has {len(config)} characters, over the limit of {MAX_CONFIG_CHARS}"
        )
    if _DECLARATION.search(config):
        raise RequestError(FIELD, "has a DOCTYPE or ENTITY declaration; a labeling config has none")
    try:
        return ET.fromstring(config)
    except ET.ParseError as exc:
        raise RequestError(FIELD, f"is not well-formed XML ({exc})") from None


def _control(root: ET.Element, tag: str, name: str) -> ET.Element:
    for element in root.iter(tag):
        if element.get("name") == name:
            if element.get("toName") != ls.TEXT:
                raise _fail(
                    f'<{tag} name="{name}"> has toName={element.get("toName")!r}; '
                    f'it must be "{ls.TEXT}"'
                )
            return element
    raise _fail(f'has no <{tag} name="{name}" toName="{ls.TEXT}">')


def _same_values(tag: str, name: str, found: list[str], expected: Sequence[str]) -> None:
    missing = [value for value in expected if value not in found]
    extra = [value for value in found if value not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"has {', '.join(map(repr, extra))} that the model does not predict")
        raise _fail(f'<{tag} name="{name}"> ' + " and ".join(parts))


def _graded(root: ET.Element, name: str) -> None:
    grades = [e.get("value", "") for e in _control(root, "Labels", name).iter("Label")]
    missing = [grade for grade in ls.GRADE_NAMES if grade not in grades]
    if missing:
        raise _fail(f'<Labels name="{name}"> lacks {", ".join(map(repr, missing))}')


def check_config(config: str, labels: Sequence[str], sentences: bool = False) -> None:
    """Whether ``config`` fits the predictions of a model with ``labels`` (with sentence
    regions when ``sentences``): RequestError naming the first mismatch otherwise."""
    root = parse_config(config)
    texts = [e for e in root.iter("Text") if e.get("name") == ls.TEXT]
    if not texts or texts[0].get("value") != "$" + ls.TEXT:
        raise _fail(f'has no <Text name="{ls.TEXT}" value="${ls.TEXT}">')
    choices = _control(root, "Choices", ls.CHOICES)
    found = [e.get("value", "") for e in choices.iter("Choice")]
    _same_values("Choices", ls.CHOICES, found, labels)
    _graded(root, ls.EVIDENCE)
    if sentences:
        _graded(root, ls.SENTENCE)
