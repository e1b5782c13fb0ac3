"""Hostile and odd input on the real servers (gRPC and HTTP): each gets a clear status naming
the field, or an exact answer, and the server is unaffected. Offsets are checked to be exact
(each token's surface, cut from the text by its offsets, is what the tokenizer read) on
control characters, combining marks, right-to-left text and non-BMP characters, and, with
hypothesis, on random Unicode.

(Malformed JSON, wrong types, oversized bodies and Host checks at the HTTP endpoint:
tests/test_http_api.py; gRPC messages over the size limit: tests/test_serve_service.py.)"""

from __future__ import annotations

import grpc
import pytest
from http_json import request_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from gradlight.runtime.explanation.sentences import split_sentences
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1.gradlight_pb2_grpc import AttributorStub

TEXT = "The patient denies chest pain. No evidence of pneumonia."
ODD = {
    "NUL and control characters": "Pain\x00fever\x07 and\x1b[31m red\x7f. Next\x0b line\x0c.",
    "combining marks": "Cafe\u0301 re\u0301sume\u0301. Z\u0351\u0336a\u0337l\u0335go.",
    "right-to-left": "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd. "
    "\u0645\u0631\u062d\u0628\u0627 ok\u202eevil\u202c.",
    "emoji and non-BMP": "Pain \U0001f600! Flag \U0001f1eb\U0001f1f7, family "
    "\U0001f468\u200d\U0001f469\u200d\U0001f467. \U0002000b \U0001d518\U0001d51e.",
    "lone spaces of every kind": "A\u00a0B\u2003C\u3000D\u2028E\u2029F.\tG\r\nH.",
    # the tiny byte-level BPE merges "a" with the first byte of "\u00c0" (its "aÃ"): one token
    # ends inside a character, the next starts inside it
    "a token across a character": "Ca va. Da\u00c0 la\u00c0.",
}


def _code(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


@pytest.fixture(scope="module")
def stub(tiny_server):
    channel = grpc.insecure_channel(
        tiny_server.address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    )
    yield AttributorStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def tokenizers(exported):
    return {
        name: Tokenizer.from_file(str(exported(name) / "tokenizer" / "tokenizer.json"))
        for name in ("bert", "roberta")
    }


def assert_offsets_exact(result: pb.TextResult, tokenizer: Tokenizer) -> None:
    """Every non-special token's ``[start, end)`` lies in the text, starts never decrease, and
    the text cut at the offsets is what the token stands for: the normalized surface for
    WordPiece, the bytes for byte-level BPE (several byte tokens of one character share its
    offsets; a token's leading space is not in its span, unless the token is only spaces; a
    token with part of a character spans that whole character, and no more)."""
    text = result.text
    tokens = [token for token in result.tokens if not token.special]
    last = 0
    for token in tokens:
        assert 0 <= token.start <= token.end <= len(text), (token, len(text))
        assert token.start >= last, (token, last)
        last = token.start
    groups: list[list[pb.TokenAttribution]] = []
    for token in tokens:
        if groups and (groups[-1][0].start, groups[-1][0].end) == (token.start, token.end):
            groups[-1].append(token)
        else:
            groups.append([token])
    if result.truncated and groups:
        groups.pop()  # truncation may keep only some of the last character's byte tokens
    for group in groups:
        surface = text[group[0].start : group[0].end]
        if group[0].token == "[UNK]":
            assert surface.strip(), group
        elif group[0].token.startswith("##") or tokenizer.normalizer is not None:
            normalized = tokenizer.normalizer.normalize_str(surface)
            assert normalized == group[0].token.removeprefix("##"), (surface, group)
        else:
            raw = b"".join(bytes(BYTE_OF[char] for char in token.token) for token in group)
            assert_bytes_span(raw, surface)


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's characters (GPT-2's table: printable bytes stand for themselves, the
    others for 256, 257, ...), each mapped back to its byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [byte for byte in range(256) if byte not in printable]
    table = {chr(byte): byte for byte in printable}
    table.update({chr(256 + n): byte for n, byte in enumerate(others)})
    return table


BYTE_OF = _byte_level_alphabet()


def test_the_byte_level_table_is_the_tokenizers_own():
    from tokenizers.pre_tokenizers import ByteLevel

    assert sorted(BYTE_OF) == sorted(ByteLevel.alphabet())
    assert sorted(BYTE_OF.values()) == list(range(256))
    assert (BYTE_OF["\u0120"], BYTE_OF["a"], BYTE_OF["\u00c3"]) == (0x20, 0x61, 0xC3)  # "Ġ"


def assert_bytes_span(raw: bytes, surface: str) -> None:
    """``raw`` (a byte-level token group's bytes) is ``surface``'s UTF-8, but for a leading
    space outside the span; or it holds part of a character at an end, and then the span is
    the least whole characters around it: it starts in the first one and ends in the last."""
    encoded = surface.encode("utf-8")
    if encoded in (raw, raw.lstrip(b" ")):
        return
    piece = raw.lstrip(b" ")
    at = encoded.find(piece)
    assert at >= 0, (surface, raw)
    assert at < len(surface[:1].encode("utf-8")), (surface, raw)
    assert len(encoded) - at - len(piece) < len(surface[-1:].encode("utf-8")), (surface, raw)


def assert_sentences_cover(result: pb.TextResult) -> None:
    """Sentence spans are in order, do not overlap, and with whitespace between them cover the
    text (of a truncated text, up to the sentences the model reads a part of, which its token
    attributions show); they are exactly the splitter's."""
    text = result.text
    position = 0
    for sentence in result.sentences:
        assert position <= sentence.start < sentence.end <= len(text)
        assert not text[position : sentence.start].strip(), "non-space text between sentences"
        assert sentence.sentence == text[sentence.start : sentence.end]
        position = sentence.end
    spans = split_sentences(text)
    if result.truncated:
        read = max((token.end for token in result.tokens if not token.special), default=0)
        spans = [span for span in spans if span.start < read]
    else:
        assert not text[position:].strip()
    assert [(s.start, s.end) for s in result.sentences] == [(s.start, s.end) for s in spans]


@pytest.mark.parametrize("case", list(ODD))
@pytest.mark.parametrize("model", ["bert", "roberta"])
def test_odd_characters_keep_offsets_exact(stub, tokenizers, model, case):
    text = ODD[case]
    response = stub.Attribute(
        pb.AttributeRequest(
            model=model, texts=[text], token_attributions=True, sentence_attributions=True
        ),
        timeout=60,
    )
    (result,) = response.results
    assert result.text == text
    assert_offsets_exact(result, tokenizers[model])
    assert_sentences_cover(result)


def test_an_emoji_is_one_code_point_wide(stub):
    text = "ok \U0001f600 fine"
    (result,) = stub.Attribute(
        pb.AttributeRequest(model="roberta", texts=[text], token_attributions=True)
    ).results
    spans = {(token.start, token.end) for token in result.tokens if not token.special}
    assert (3, 4) in spans  # code points, not UTF-16 units (3, 5) or bytes (3, 7)


def test_odd_characters_over_http_equal_grpc(tiny_server, stub):
    for text in ODD.values():
        status, answer = request_json(
            tiny_server.http_url + "v1/attribute",
            {
                "model": "roberta",
                "texts": [text],
                "token_attributions": True,
                "sentence_attributions": True,
            },
        )
        assert status == 200
        (result,) = stub.Attribute(
            pb.AttributeRequest(
                model="roberta", texts=[text], token_attributions=True, sentence_attributions=True
            )
        ).results
        assert answer["results"][0]["text"] == text
        got = [(t["start"], t["end"], t["token_id"]) for t in answer["results"][0]["tokens"]]
        assert got == [(t.start, t.end, t.token_id) for t in result.tokens]


LONG = " ".join(f"Visit {i}: the patient denies chest pain, e.g. at night." for i in range(2000))[
    :100_000
]


@pytest.mark.parametrize("method", ["Predict", "Attribute"])
def test_a_100000_character_text_is_truncated_and_flagged(stub, engine_for, method):
    message = pb.PredictRequest if method == "Predict" else pb.AttributeRequest
    extra = (
        {} if method == "Predict" else {"token_attributions": True, "sentence_attributions": True}
    )
    (result,) = getattr(stub, method)(
        message(model="bert", texts=[LONG], **extra), timeout=120
    ).results
    assert result.text == LONG
    assert result.truncated
    assert result.num_tokens == engine_for("bert").max_length
    if method == "Attribute":
        assert len(result.tokens) == result.num_tokens
        assert max(token.end for token in result.tokens) < 1000
        read = max(token.end for token in result.tokens)
        every = split_sentences(LONG)
        assert len(every) > 1500  # only the sentences the model reads a part of are listed
        listed = [s for s in every if s.start < read]
        assert [(s.start, s.end) for s in result.sentences] == [(s.start, s.end) for s in listed]
        assert any(any(s.scores) for s in result.sentences)


def test_a_100000_character_text_over_http(tiny_server):
    status, answer = request_json(
        tiny_server.http_url + "v1/attribute",
        {"model": "bert", "texts": [LONG], "sentence_attributions": True},
    )
    assert status == 200
    assert answer["results"][0]["truncated"] is True
    assert answer["results"][0]["text"] == LONG


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (pb.AttributeRequest(model="bert"), "texts: is empty"),
        (pb.PredictRequest(model="bert"), "texts: is empty"),
        (
            pb.AttributeRequest(model="bert", texts=[""], token_attributions=True),
            "texts[0]: is empty or whitespace",
        ),
        (
            pb.AttributeRequest(
                model="bert", texts=[TEXT, " \t\n\u3000\u00a0\u2028"], sentence_attributions=True
            ),
            "texts[1]: is empty or whitespace only",
        ),
        (pb.AttributeRequest(model="bert", texts=["x"] * 10_000), "has 10000 texts; the limit"),
        (pb.PredictRequest(model="bert", texts=["x"] * 10_000), "has 10000 texts; the limit"),
        (pb.AttributeRequest(model="bert", texts=[TEXT], max_length=-1), "max_length: is -1"),
        (
            pb.AttributeRequest(model="bert", texts=[TEXT], max_length=2**31 - 1),
            "max_length: is 2147483647, above the model's maximum",
        ),
        (
            pb.PredictRequest(model="bert", texts=[TEXT], max_length=-(2**31)),
            "max_length: is -2147483648",
        ),
        (
            pb.AttributeRequest(model="bert", texts=[TEXT], labels=["label_0", ""]),
            "labels[1]: unknown label ''",
        ),
        (
            pb.AttributeRequest(model="bert", texts=[TEXT], labels=["<script>\x00"]),
            "labels[0]: unknown label",
        ),
    ],
    ids=lambda value: str(value)[:30] if isinstance(value, str) else None,
)
def test_bad_requests_name_the_field(stub, request_, fragment):
    method = stub.Predict if isinstance(request_, pb.PredictRequest) else stub.Attribute
    code, details = _code(lambda: method(request_, timeout=60))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in details


def test_unknown_models_are_not_found_whatever_their_name(stub):
    for name in ("gpt", "../../etc/passwd", "bert\x00", "\U0001f600", "x" * 10_000):
        code, details = _code(lambda n=name: stub.Predict(pb.PredictRequest(model=n, texts=["a"])))
        assert code == grpc.StatusCode.NOT_FOUND
        assert "is not served; serving: bert" in details
        assert len(details) < 200  # a long name is quoted cut short


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 400, "model: is empty but several models are served"),
        ({"model": "bert"}, 400, "texts: is empty"),
        (b"", 400, "body: is not valid JSON"),
        (b"null", 400, "body: must be a JSON object"),
        ({"texts": ["x"] * 10_000, "model": "bert"}, 400, "has 10000 texts; the limit is 256"),
        ({"texts": [TEXT], "model": "bert", "max_length": -5}, 400, "max_length: is -5"),
        (
            {"texts": [TEXT], "model": "bert", "max_length": 2**40},
            400,
            "max_length: must be a 32-bit integer",
        ),
        ({"texts": [TEXT], "model": "bert", "max_length": 1.5}, 400, "max_length: must be"),
        ({"texts": None, "model": "bert"}, 400, "texts: is empty"),
        ({"texts": [TEXT], "model": ["bert"]}, 400, "model: must be a string"),
        ({"texts": [TEXT], "model": "nope"}, 404, "model 'nope' is not served"),
        ({"texts": [TEXT], "model": "bert", "labels": ["nope"]}, 400, "labels[0]: unknown"),
        ({"texts": [{"text": TEXT}], "model": "bert"}, 400, "texts: must be a list of strings"),
    ],
)
def test_bad_http_bodies_name_the_field(tiny_server, body, status, fragment):
    got, answer = request_json(tiny_server.http_url + "v1/attribute", body)
    assert got == status, answer
    assert fragment in answer["error"]["message"]


def test_the_server_is_unaffected_after_all_of_that(tiny_client):
    assert tiny_client.health() == "SERVING"
    assert tiny_client.attribute([TEXT], model="bert").results[0].text == TEXT


# ---- property-based: random Unicode through the real server ----

UNICODE = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=80
)
MIXED = st.lists(
    st.one_of(UNICODE, st.sampled_from([". ", "! ", "? ", "\n", "\n\n", "Dr. ", "A. ", " 2.5 "])),
    min_size=1,
    max_size=8,
).map("".join)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=MIXED, model=st.sampled_from(["bert", "roberta"]), max_length=st.sampled_from([0, 8]))
def test_random_unicode_offsets_and_sentences(stub, tokenizers, text, model, max_length):
    request = pb.AttributeRequest(
        model=model,
        texts=[text],
        max_length=max_length,
        token_attributions=True,
        sentence_attributions=True,
    )
    if not text.strip():
        code, details = _code(lambda: stub.Attribute(request, timeout=60))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "texts[0]" in details
        return
    (result,) = stub.Attribute(request, timeout=60).results
    assert result.text == text
    assert_offsets_exact(result, tokenizers[model])
    assert_sentences_cover(result)
    assert all(abs(score) <= 1 for token in result.tokens for score in token.scores)


def test_an_answer_over_the_send_limit_is_refused_clearly(engine_for, caplog):
    """gRPC itself would fail such an answer with a bare message and a traceback in the log;
    the servicer measures it first and says how to get a smaller one."""
    from serving import ServerThread

    from gradlight.client import Client
    from gradlight.runtime.serving.server import ServerSettings
    from gradlight.runtime.settings import ServiceLimits

    settings = ServerSettings(port=0, limits=ServiceLimits(max_send_message_bytes=2048))
    with (
        ServerThread({"bert": engine_for("bert")}, settings) as server,
        Client(server.address) as client,
    ):
        code, details = _code(lambda: client.attribute([TEXT * 4] * 3, raw_scores=True))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "over this server's limit of 2048 bytes" in details and "fewer texts" in details
        stream = client.attribute_stream(
            [
                pb.AttributeRequest(texts=["Short."], token_attributions=True),
                pb.AttributeRequest(texts=[TEXT * 4] * 3, token_attributions=True),
            ]
        )
        assert next(stream).results[0].text == "Short."
        code, details = _code(lambda: next(stream))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith("requests[1]:")
        assert client.predict(["Still serving."]).results[0].text == "Still serving."
    assert "Traceback" not in caplog.text and "ExecuteBatchError" not in caplog.text
