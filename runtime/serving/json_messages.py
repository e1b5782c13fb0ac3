"""The HTTP endpoints' bodies: protobuf's JSON mapping of the ``gradlight.v1`` messages. A
request may name fields by their proto names (``max_length``) or JSON names (``maxLength``);
responses use the proto names, in the proto's field order, and carry the fields that apply to
the answer (``to_json``). Errors name the field and say what it must be."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from gradlight.wire.errors import RequestError
from gradlight.wire.methods import FIELDS_BY_NAME, PATH_METHODS

M = TypeVar("M", bound=Message)


_FIELD_KIND = {  # what a field must be: (one value, several values)
    FieldDescriptor.TYPE_STRING: ("a string (valid Unicode)", "strings (valid Unicode)"),
    FieldDescriptor.TYPE_BOOL: ("true or false", "true or false values"),
    FieldDescriptor.TYPE_INT32: ("a 32-bit integer", "32-bit integers"),
    FieldDescriptor.TYPE_UINT64: ("an integer from 0 to 2**64 - 1", "such integers"),
    FieldDescriptor.TYPE_FLOAT: ("a number", "numbers"),
}


def _expected(field: FieldDescriptor) -> str:
    one, several = _FIELD_KIND.get(field.type, ("a value of its type", "values of its type"))
    return f"a list of {several}" if field.is_repeated else one


def shown_json(value: Any) -> str:
    text = json.dumps(value)  # ASCII: a lone surrogate in the input cannot break the reply
    return text if len(text) <= 60 else text[:57] + "..."


def parse_message(body: bytes, message_type: type[M]) -> M:
    """A request message from a JSON body; errors name the field and say what it must be."""
    name = message_type.DESCRIPTOR.name
    try:
        data = json.loads(body.decode("utf-8-sig"))  # JSON travels as UTF-8 (RFC 8259)
    except UnicodeDecodeError:
        raise RequestError("body", "is not UTF-8 text; send UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            "body", f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except (RecursionError, ValueError) as exc:  # nesting too deep, a number too long
        raise RequestError("body", f"is not usable JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise RequestError(
            "body", f"must be a JSON object with the fields of {name}, got {shown_json(data)}"
        )
    fields: dict[str, FieldDescriptor] = {}
    for field in message_type.DESCRIPTOR.fields:
        fields[field.name] = field
        fields[field.json_name] = field
    message = message_type()
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            known = ", ".join(field.name for field in message_type.DESCRIPTOR.fields)
            raise RequestError(key, f"is not a field of {name}; its fields are {known}")
        part = message_type()
        try:
            json_format.ParseDict({key: value}, part)
        except json_format.ParseError:
            raise RequestError(
                field.name, f"must be {_expected(field)}, got {shown_json(value)}"
            ) from None
        message.MergeFrom(part)
    return message


def to_json(message: Message) -> dict[str, Any]:
    """``message`` in protobuf's JSON mapping, with the fields that apply to it: a field that is
    meaningful at its default stays (``truncated: false``, a token's ``start: 0``), while an
    empty list and a field of another method or another kind of answer are left out (a
    prediction has no ``tokens``, ``method`` or ``seed``; input x gradient has no ``seed``,
    ``steps`` or ``tolerance_missed``; gradient_shap no ``tolerance_missed``).
    Keys come in the proto's field order, whatever the message holds."""
    printed = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _applying(message, printed)


def _applying(message: Message, printed: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if field.name not in printed or not _applies(message, field):
            continue
        value = printed[field.name]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            held = getattr(message, field.name)
            if field.is_repeated:
                value = [_applying(item, part) for item, part in zip(held, value, strict=True)]
            else:
                value = _applying(held, value)
        kept[field.name] = value
    if message.DESCRIPTOR.name == "EntityResult" and "result" in kept:
        kept["result"].pop("text", None)  # left empty: the text is the parent result's
    return kept


# TextResult's fields that apply when the text itself was classified: all but an entity-focused
# request's, whose results are its entities' (``text`` and ``entities`` only).
_CLASSIFIED = frozenset(
    {"labels", "probabilities", "predicted_label", "truncated", "predicted_labels", "num_tokens"}
)


def _applies(message: Message, field: FieldDescriptor) -> bool:
    value = getattr(message, field.name)
    if message.DESCRIPTOR.name == "TextResult":
        if field.name in _CLASSIFIED:
            return not message.entities  # type: ignore[attr-defined]
        if field.name == "method":
            return bool(value)
        if field.name == "seed":  # the seed of random draws: GradientSHAP's, faithfulness'
            faithfulness = message.HasField("faithfulness")  # type: ignore[attr-defined]
            return FIELDS_BY_NAME["seed"].read_by(message.method, faithfulness)  # type: ignore[attr-defined]
        if field.name == "steps":  # the points of a path method
            return message.method in PATH_METHODS  # type: ignore[attr-defined]
        if field.name == "tolerance_missed":  # of the methods that read a tolerance
            tolerance = FIELDS_BY_NAME["completeness_tolerance"]
            return bool(message.method) and tolerance.read_by(message.method, False)  # type: ignore[attr-defined]
    return not field.is_repeated or len(value) > 0
