"""The HTTP endpoints' bodies: protobuf's JSON mapping of the ``gradlight.v1`` messages. A
request may name fields by their proto names (``max_length``) or JSON names (``maxLength``);
responses use the proto names, in the proto's field order, and carry the fields that apply to
the answer (``to_json``). Errors name the field and say what it must be.

Decoding (``parse_message``) and encoding (``encode_message``) run in a worker thread, and no
C call in them holds the GIL for long: JSON's C scanner and encoder run on bounded pieces (at
most ``_C_SPAN`` characters of a body per scanner call; at most ``_LEAVES`` values of an
answer per ``json.dumps`` call), and an answer's results are converted one at a time, so the
event loop keeps answering (``/healthz``) while a large body or answer is worked on."""

from __future__ import annotations

import itertools
import json
from json import decoder as json_decoder
from json import scanner as json_scanner
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
    text = json.dumps(_clipped(value))  # ASCII: a lone surrogate cannot break the reply
    return text if len(text) <= 60 else text[:57] + "..."


def _clipped(value: Any, depth: int = 0) -> Any:
    """``value`` without what json.dumps would print past its 60th character (a list of
    millions of values is not printed whole to show 57 characters of it): lists and objects
    cut to 60 items, strings (keys too) to 60 characters, nesting to 60 levels."""
    if depth >= 60:
        return None
    if isinstance(value, str):
        return value[:60]
    if isinstance(value, list):
        return [_clipped(item, depth + 1) for item in value[:60]]
    if isinstance(value, dict):
        items = itertools.islice(value.items(), 60)
        return {key[:60]: _clipped(item, depth + 1) for key, item in items}
    return value


def decode_body(body: bytes) -> Any:
    """The JSON value of a request body (UTF-8, as JSON travels: RFC 8259); RequestError on
    the field ``body`` when it is not usable JSON."""
    try:
        return decode_json(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise RequestError("body", "is not UTF-8 text; send UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            "body", f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except (RecursionError, ValueError) as exc:  # nesting too deep, a number too long
        raise RequestError("body", f"is not usable JSON ({type(exc).__name__})") from None


def parse_message(body: bytes, message_type: type[M]) -> M:
    """A request message from a JSON body; errors name the field and say what it must be."""
    name = message_type.DESCRIPTOR.name
    data = decode_body(body)
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


# The most characters one call of JSON's C scanner decodes (about a millisecond), but for a
# single string or number: a container within this many characters of the end of the text is
# decoded whole; a larger array in runs of elements this long; any other value one by one.
_C_SPAN = 64 * 1024
_DECODER = json.JSONDecoder()
_C_SCAN = json_scanner.make_scanner(_DECODER)
_WHITESPACE = json_decoder.WHITESPACE.match


def decode_json(text: str) -> Any:
    """``json.loads(text)``: the same value, or the same ``JSONDecodeError`` (message and
    position), with no C call over more than ``_C_SPAN`` characters but for a single string or
    number."""
    try:
        value, end = _scan(text, _WHITESPACE(text, 0).end())
    except StopIteration as exc:
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    end = _WHITESPACE(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _scan(text: str, index: int) -> tuple[Any, int]:
    """The value at ``index`` and where it ends (as json.scanner's ``scan_once``)."""
    if len(text) - index > _C_SPAN:
        start = text[index : index + 1]
        if start == "{":
            return json_decoder.JSONObject((text, index + 1), True, _scan, None, None, {})  # type: ignore[no-any-return]
        if start == "[":
            return _array(text, index + 1)
    return _C_SCAN(text, index)  # type: ignore[no-any-return]


def _array(text: str, end: int) -> tuple[list[Any], int]:
    """json.decoder's ``JSONArray`` from just after the ``[``, with runs of elements decoded
    by the C scanner where a run can be cut off at a comma between elements."""
    values: list[Any] = []
    end = _WHITESPACE(text, end).end()
    if text[end : end + 1] == "]":
        return values, end + 1
    next_run = end  # no run tried before here (one failed: try again a span further)
    while True:
        if end >= next_run and len(text) - end > _C_SPAN:
            run = _run(text, end)
            if run is not None:
                values.extend(run[0])
                end = _WHITESPACE(text, run[1]).end()
                continue
            next_run = end + _C_SPAN
        try:
            value, end = _scan(text, end)
        except StopIteration as exc:
            raise json.JSONDecodeError("Expecting value", text, exc.value) from None
        values.append(value)
        end = _WHITESPACE(text, end).end()
        nextchar = text[end : end + 1]
        end += 1
        if nextchar == "]":
            return values, end
        if nextchar != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, end - 1)
        end = _WHITESPACE(text, end).end()


def _run(text: str, start: int) -> tuple[list[Any], int] | None:
    """The elements from ``start`` to one of the first few commas ``_C_SPAN`` further, and the
    index after that comma; None when none of those commas is between two elements of this
    array (a comma inside a string or a nested container, or after the array's end, leaves a
    run that does not decode whole, or holds no element)."""
    cut = start + _C_SPAN - 1
    for _ in range(4):
        cut = text.find(",", cut + 1)
        if cut < 0:
            return None
        run = "[" + text[start:cut] + "]"
        try:
            values, end = _C_SCAN(run, 0)
        except (StopIteration, ValueError, RecursionError):  # JSONDecodeError is a ValueError
            continue
        if end == len(run) and values:
            return values, cut + 1
    return None


# Values (strings, numbers, booleans, nulls) one json.dumps call encodes: about a millisecond.
_LEAVES = 2048
_CHUNK_BYTES = 1024 * 1024


def encode_json(value: Any) -> list[bytes]:
    """``json.dumps(value, ensure_ascii=False)`` in UTF-8, in chunks of about a MiB, made by
    json.dumps calls of at most ``_LEAVES`` values each (but for a single long string). Lists
    hold values of one kind, as protobuf's JSON mapping has them."""
    parts: list[str] = []
    _encode(value, parts)
    return _chunks(parts)


def encode_message(message: Message) -> list[bytes]:
    """``encode_json(to_json(message))`` for an answer (fields of strings and messages), with
    each message of a repeated field converted and encoded in turn: a large answer's converted
    dicts never all exist at once (they would survive into the garbage collector's oldest
    generation, and a full collection stops every thread for as long as it takes)."""
    fields = message.DESCRIPTOR.fields
    if any(
        f.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE) for f in fields
    ):
        return encode_json(to_json(message))
    parts = ["{"]
    for field in fields:
        if not _applies(message, field) or (
            field.has_presence and not message.HasField(field.name)
        ):
            continue
        parts.append(("" if len(parts) == 1 else ", ") + json.dumps(field.name) + ": ")
        value = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_STRING:
            parts.append(
                json.dumps(list(value) if field.is_repeated else value, ensure_ascii=False)
            )
        elif field.is_repeated:
            parts.append("[")
            for index, item in enumerate(value):
                parts.append(", " if index else "")
                _encode(to_json(item), parts)
            parts.append("]")
        else:
            _encode(to_json(value), parts)
    parts.append("}")
    return _chunks(parts)


def _chunks(parts: list[str]) -> list[bytes]:
    """``parts`` joined in UTF-8, in chunks of about ``_CHUNK_BYTES``."""
    chunks: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    for part in parts:
        pending.append(part.encode("utf-8"))
        size += len(pending[-1])
        if size >= _CHUNK_BYTES:
            chunks.append(b"".join(pending))
            pending, size = [], 0
    if pending or not chunks:
        chunks.append(b"".join(pending))
    return chunks


def _flat_size(value: Any) -> int | None:
    """The values in ``value`` when no container in it holds a container (None: one does)."""
    if isinstance(value, dict):
        size = 0
        for item in value.values():
            if isinstance(item, dict) or (isinstance(item, list) and _nested(item)):
                return None
            size += len(item) if isinstance(item, list) else 1
        return size
    if isinstance(value, list):
        return None if _nested(value) else len(value)
    return 1


def _nested(items: list[Any]) -> bool:
    return bool(items) and isinstance(items[0], (dict, list))


def _encode(value: Any, parts: list[str]) -> None:
    size = _flat_size(value)
    if size is not None and size <= _LEAVES:
        parts.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, dict):
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            parts.append((", " if index else "") + json.dumps(key, ensure_ascii=False) + ": ")
            _encode(item, parts)
        parts.append("}")
    elif not _nested(value):  # a long list of values: in slices
        parts.append("[")
        for start in range(0, len(value), _LEAVES):
            text = json.dumps(value[start : start + _LEAVES], ensure_ascii=False)[1:-1]
            parts.append((", " if start else "") + text)
        parts.append("]")
    else:  # a list of containers: as many as fit in one call at a time
        parts.append("[")
        start = 0
        while start < len(value):
            end, leaves = start, 0
            while end < len(value) and (size := _flat_size(value[end])) is not None:
                if leaves + size > _LEAVES:
                    break
                leaves, end = leaves + size, end + 1
            if start:
                parts.append(", ")
            if end == start:  # too large to go with others
                _encode(value[start], parts)
                end = start + 1
            else:
                parts.append(json.dumps(value[start:end], ensure_ascii=False)[1:-1])
            start = end
        parts.append("]")


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
        if field.name in ("method", "aggregation"):  # of token scores; of windows
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
