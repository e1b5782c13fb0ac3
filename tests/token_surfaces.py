"""What byte-level BPE tokens (RoBERTa's "Ġchest") spell, checked against the served offsets:
each token's span must be exactly its surface in the original text."""

from __future__ import annotations

from collections.abc import Collection

from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.execution.words import WHITE_SPACE, is_blank

BLANKS = "".join(WHITE_SPACE)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet (one printable character per byte value), inverted."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = {byte: byte for byte in printable}
    for byte in range(256):
        if byte not in codes:
            codes[byte] = 256 + len(codes) - len(printable)
    return {chr(code): byte for byte, code in codes.items()}


BYTES = _byte_decoder()


def pieces(encoded: EncodedText, added: Collection[str]) -> list[tuple[str, tuple[int, int]]]:
    """(what the tokens spell, their span) in order, special tokens left out: consecutive
    tokens taken together until their bytes are whole UTF-8 characters (a character the
    vocabulary never merged is several byte tokens with the character's span); an ``added``
    token (a marker such as ``<e>``) alone, spelled as it is written."""
    found: list[tuple[str, tuple[int, int]]] = []
    pending, span = b"", None
    for token, (start, end), special in zip(
        encoded.tokens, encoded.offsets, encoded.special, strict=True
    ):
        if special:
            continue
        if token in added:
            assert not pending, encoded.tokens
            found.append((token, (start, end)))
            continue
        pending += bytes(BYTES[char] for char in token)
        span = (start, end) if span is None else (min(span[0], start), max(span[1], end))
        try:
            spelled = pending.decode("utf-8")
        except UnicodeDecodeError:
            continue
        found.append((spelled, span))
        pending, span = b"", None
    assert not pending, encoded.tokens
    return found


def check_surfaces(text: str, encoded: EncodedText, added: Collection[str]) -> None:
    """Every piece's span is what it spells without the whitespace around it, a piece of
    whitespace alone spans whitespace only (its own, or nothing where the tokenizer added it:
    the "Ġ" that ``add_prefix_space`` puts before a word), and the pieces spell every character
    of the text that is not whitespace, in order: nothing lost, nothing made up."""
    spelled = []
    for piece, (start, end) in pieces(encoded, added):
        surface = piece.strip(BLANKS)
        if surface:
            assert text[start:end] == surface, (piece, (start, end), text)
            spelled.append(surface)
        else:
            assert is_blank(text[start:end]), (piece, (start, end), text)
    assert "".join(spelled) == "".join(char for char in text if char not in WHITE_SPACE)
