"""``completeness_tolerance`` (integrated gradients' steps chosen per text) and the answer's
``steps`` and ``tolerance_missed`` on every surface, without a model: the request field from
gRPC and from HTTP JSON to the runtime's options, its refusals naming the field, the answer's
fields in the proto and in the JSON (the fields that apply: a path method's steps, integrated
gradients' tolerance_missed; entity results too), the terminal, the bulk records, the CLI
flag and the client keyword. The page: tests/test_visualizer_views.py."""

from __future__ import annotations

import argparse
import json
import math
import types

import numpy as np
import pytest
from visualizer_page import standalone_page

from gradlight.bulk import formats
from gradlight.bulk.lines import Item, Span
from gradlight.cli import method_flags
from gradlight.cli.errors import UsageError
from gradlight.client.client import Client
from gradlight.client.render import render_result
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.entities import MarkedSpan
from gradlight.runtime.explanation.results import EntitiesResult, EntityResult, TextResult
from gradlight.runtime.serving.json_messages import parse_message, to_json
from gradlight.runtime.serving.messages import attribute_options, text_result
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.wire.errors import RequestError
from gradlight.wire.methods import (
    DEFAULT_MAX_TOLERANCE_STEPS,
    FEJER,
    FIELD_NAMES,
    INTEGRATED_GRADIENTS,
    TOLERANCE_STEPS,
    resolve,
)

IG = {"method": INTEGRATED_GRADIENTS}


# ---- the request ----


@pytest.mark.parametrize(
    ("values", "field", "fragment"),
    [
        ({**IG, "completeness_tolerance": 1.0}, "completeness_tolerance", "below 1"),
        ({**IG, "completeness_tolerance": 2.5}, "completeness_tolerance", "below 1"),
        ({**IG, "completeness_tolerance": -0.01}, "completeness_tolerance", "finite value >= 0"),
        ({**IG, "completeness_tolerance": math.nan}, "completeness_tolerance", "finite value"),
        ({**IG, "completeness_tolerance": math.inf}, "completeness_tolerance", "finite value"),
        (
            {**IG, "completeness_tolerance": 0.01, "integration": "gausslegendre"},
            "integration",
            FEJER,
        ),
        (
            {**IG, "completeness_tolerance": 0.01, "integration": "riemann_trapezoid"},
            "integration",
            FEJER,
        ),
        ({**IG, "completeness_tolerance": 0.01, "steps": 20}, "steps", "8, 16, 32, 64"),
        ({**IG, "completeness_tolerance": 0.01, "steps": 4}, "steps", "8, 16, 32, 64"),
        ({**IG, "completeness_tolerance": 0.01, "steps": 1024}, "steps", "8, 16, 32, 64"),
    ],
)
def test_a_bad_tolerance_is_refused_naming_the_field(values, field, fragment):
    with pytest.raises(RequestError) as info:
        resolve(values)
    assert info.value.field == field
    assert fragment in info.value.description


def test_a_tolerance_chooses_the_fejer_rule_up_to_the_most_steps():
    settings = resolve({**IG, "completeness_tolerance": 0.01})
    assert (settings.integration, settings.steps) == (FEJER, DEFAULT_MAX_TOLERANCE_STEPS)
    assert settings.tolerance == 0.01
    for steps in TOLERANCE_STEPS:
        values = {**IG, "completeness_tolerance": 0.5, "steps": steps}
        assert resolve({**values, "integration": FEJER}).steps == steps
    # Unset or 0: fixed steps, as before; another method does not read it.
    for unset in (None, 0.0):
        fixed = resolve({**IG, "completeness_tolerance": unset})
        assert (fixed.tolerance, fixed.steps, fixed.integration) == (0.0, 32, "gausslegendre")
    assert resolve({"method": "gradient_shap", "completeness_tolerance": 0.01}).tolerance == 0.0


def _values(options) -> dict:
    return {name: getattr(options, name) for name in FIELD_NAMES}


def test_the_tolerance_reaches_the_runtime_options_from_grpc_and_http():
    sent = pb.AttributeRequest(
        texts=["x"], token_attributions=True, completeness_tolerance=0.01, **IG
    )
    options = attribute_options(sent)
    assert options.completeness_tolerance == pytest.approx(0.01)  # a proto float: float32
    assert resolve(_values(options)).integration == FEJER
    # Unset is None (the default: fixed steps); 0 is sent as 0.
    assert attribute_options(pb.AttributeRequest(texts=["x"])).completeness_tolerance is None
    zero = pb.AttributeRequest(texts=["x"], completeness_tolerance=0.0)
    assert attribute_options(zero).completeness_tolerance == 0.0
    # HTTP: the proto name or protobuf's JSON name, the same message.
    for key in ("completeness_tolerance", "completenessTolerance"):
        body = {"texts": ["x"], "method": INTEGRATED_GRADIENTS, key: 0.01, "steps": 16}
        message = parse_message(json.dumps(body).encode(), pb.AttributeRequest)
        assert message.HasField("completeness_tolerance")
        options = attribute_options(message)
        assert options.completeness_tolerance == pytest.approx(0.01)
        assert resolve(_values(options)).steps == 16
    unset = parse_message(b'{"texts": ["x"]}', pb.AttributeRequest)
    assert attribute_options(unset).completeness_tolerance is None
    # protobuf's JSON spells NaN as a string: it parses, and the check refuses it by name.
    body = b'{"texts": ["x"], "method": "integrated_gradients", "completeness_tolerance": "NaN"}'
    with pytest.raises(RequestError) as info:
        resolve(_values(attribute_options(parse_message(body, pb.AttributeRequest))))
    assert info.value.field == "completeness_tolerance"
    with pytest.raises(RequestError) as info:
        parse_message(b'{"completeness_tolerance": "small"}', pb.AttributeRequest)
    assert info.value.field == "completeness_tolerance"
    assert "must be a number" in info.value.description


def test_the_client_keyword_and_the_cli_flag():
    sent: list[pb.AttributeRequest] = []
    client = Client.__new__(Client)
    client.timeout, client._metadata = None, ()
    client._stub = types.SimpleNamespace(Attribute=lambda request, **_: sent.append(request))
    client.attribute(["x"], method=INTEGRATED_GRADIENTS, completeness_tolerance=0.01)
    assert sent[-1].HasField("completeness_tolerance")
    assert sent[-1].completeness_tolerance == pytest.approx(0.01)
    client.attribute(["x"], method=INTEGRATED_GRADIENTS)
    assert not sent[-1].HasField("completeness_tolerance")
    assert "completeness_tolerance" in (Client.attribute.__doc__ or "")

    parser = argparse.ArgumentParser()
    parser.add_argument("--dummy")
    method_flags.add_method_flags(parser)
    args = parser.parse_args(
        ["--method", "integrated_gradients", "--completeness-tolerance", "0.05", "--steps", "128"]
    )
    options = method_flags.method_options(args)
    assert (options["completeness_tolerance"], options["steps"]) == (0.05, 128)
    assert method_flags.method_options(parser.parse_args([]))["completeness_tolerance"] is None
    shap = parser.parse_args(["--method", "gradient_shap", "--completeness-tolerance", "0.05"])
    with pytest.raises(UsageError, match="--completeness-tolerance is read only with --method "):
        method_flags.method_options(shap)


# ---- the answer ----


def _encoded() -> EncodedText:
    return EncodedText(
        ids=np.array([101, 7, 8, 102], dtype=np.int64),
        type_ids=np.zeros(4, dtype=np.int64),
        tokens=("[CLS]", "no", "fever", "[SEP]"),
        offsets=((0, 0), (0, 2), (3, 8), (0, 0)),
        special=(True, False, False, True),
        truncated=False,
    )


def _runtime_result(method: str, **more) -> TextResult:
    scores = np.array([[0.0, 1.0, -0.5, 0.0], [0.0, -1.0, 0.25, 0.0]])
    fields = {"token_scores": scores, "raw_scores": scores} if method else {}
    if method and method != "input_x_gradient":
        fields["completeness_gaps"] = np.array([0.002, -0.03])
    return TextResult(
        text="no fever",
        labels=("absent", "present"),
        probabilities=np.array([0.8, 0.2]),
        predicted_label="absent",
        predicted_labels=("absent",),
        encoded=_encoded(),
        method=method,
        **fields,
        **more,
    )


def test_the_answer_carries_the_steps_and_the_missed_tolerance():
    """In the proto always; in the JSON where they apply: steps for a path method,
    tolerance_missed for integrated gradients (the method that reads a tolerance), in the
    proto's field order; entity results as text results."""
    chosen = text_result(_runtime_result(INTEGRATED_GRADIENTS, steps=16, tolerance_missed=True))
    assert (chosen.steps, chosen.tolerance_missed) == (16, True)
    printed = to_json(chosen)
    assert list(printed)[-4:] == ["method", "completeness_gaps", "steps", "tolerance_missed"]
    assert (printed["steps"], printed["tolerance_missed"]) == (16, True)
    fixed = to_json(text_result(_runtime_result(INTEGRATED_GRADIENTS, steps=32)))
    assert (fixed["steps"], fixed["tolerance_missed"]) == (32, False)  # meaningful at false
    shap = to_json(text_result(_runtime_result("gradient_shap", steps=4, seed=9)))
    assert list(shap)[-4:] == ["method", "completeness_gaps", "seed", "steps"]
    assert shap["steps"] == 4 and "tolerance_missed" not in shap
    plain = to_json(text_result(_runtime_result("input_x_gradient")))
    assert plain["method"] == "input_x_gradient"
    assert "steps" not in plain and "tolerance_missed" not in plain
    prediction = to_json(text_result(_runtime_result("")))
    assert "steps" not in prediction and "tolerance_missed" not in prediction

    span = MarkedSpan(3, 8, 0, 8, "no <e>fever</e>", 3, 4)
    chosen = _runtime_result(INTEGRATED_GRADIENTS, steps=8, tolerance_missed=True)
    entities = EntitiesResult("no fever", (EntityResult(span, chosen),))
    message = text_result(entities)
    assert (message.entities[0].result.steps, message.entities[0].result.tolerance_missed) == (
        8,
        True,
    )
    printed = to_json(pb.AttributeResponse(model="m", results=[message]))["results"][0]
    assert "steps" not in printed and "tolerance_missed" not in printed  # the text's own
    entity = printed["entities"][0]["result"]
    assert (entity["steps"], entity["tolerance_missed"]) == (8, True)


def _answer(method: str = INTEGRATED_GRADIENTS, **more) -> pb.TextResult:
    result = pb.TextResult(
        text="No fever today",
        labels=["absent", "present"],
        probabilities=[0.9, 0.1],
        predicted_label="absent",
        predicted_labels=["absent"],
        method=method,
        completeness_gaps=[0.0012, -0.034],
        **more,
    )
    for start, end, score in [(0, 2, 1.0), (3, 8, -0.6), (9, 14, 0.2)]:
        scores = [score, -score]
        result.tokens.add(token="t", start=start, end=end, scores=scores, raw_scores=scores)
    return result


def test_the_terminal_shows_the_steps_and_a_missed_tolerance():
    chosen = render_result(_answer(steps=16), None, color=False)
    assert "completeness gap: +0.0012 (sum of raw scores - logit change) at 16 steps" in chosen
    assert "tolerance not reached" not in chosen
    missed = render_result(_answer(steps=64, tolerance_missed=True), "present", color=False)
    assert "completeness gap: -0.0340 (sum of raw scores - logit change) at 64 steps; " in missed
    assert "tolerance not reached at the most steps" in missed
    shap = render_result(_answer("gradient_shap", steps=4, seed=3), None, color=False)
    assert "at 4 samples" in shap and "tolerance" not in shap


def test_the_bulk_records_carry_the_steps_and_the_missed_tolerance():
    """gradlight: per answer, next to the completeness gaps; Prodigy's meta and Label
    Studio's data: the most steps of the line's answers and whether any missed the
    tolerance."""
    item = Item(1, "No fever today", id="a")
    record = formats.record(item, _answer(steps=16), formats.OutputOptions())
    assert list(record)[-3:] == ["completeness_gaps", "steps", "tolerance_missed"]
    assert (record["steps"], record["tolerance_missed"]) == (16, False)
    shap = formats.record(item, _answer("gradient_shap", steps=4, seed=5), formats.OutputOptions())
    assert shap["steps"] == 4 and "tolerance_missed" not in shap
    plain = pb.TextResult(
        text="No fever today", labels=["absent"], probabilities=[1.0], predicted_label="absent",
        method="input_x_gradient",
    )  # fmt: skip
    plain_record = formats.record(item, plain, formats.OutputOptions())
    assert "steps" not in plain_record and "tolerance_missed" not in plain_record

    spans = Item(2, "No fever today", spans=(Span(0, 2), Span(3, 8)))
    line = pb.TextResult(text=spans.text)
    for (start, end), steps, missed in (((0, 2), 8, False), ((3, 8), 64, True)):
        line.entities.add(
            start=start, end=end, context_start=0, context_end=14,
            result=_answer(steps=steps, tolerance_missed=missed),
        )  # fmt: skip
    entities = formats.record(spans, line, formats.OutputOptions())["entities"]
    assert [(e["steps"], e["tolerance_missed"]) for e in entities] == [(8, False), (64, True)]

    prodigy = formats.OutputOptions(format=formats.PRODIGY, labels=(formats.PREDICTED,))
    meta = formats.record(spans, line, prodigy)["meta"]
    assert (meta["steps"], meta["tolerance_missed"]) == (64, True)
    meta = formats.record(item, _answer(steps=16), prodigy)["meta"]
    assert (meta["method"], meta["steps"], meta["tolerance_missed"]) == (
        INTEGRATED_GRADIENTS, 16, False,
    )  # fmt: skip
    studio = formats.OutputOptions(format=formats.LABEL_STUDIO, labels=(formats.PREDICTED,))
    data = formats.record(spans, line, studio)["data"]
    assert (data["steps"], data["tolerance_missed"]) == (64, True)
    assert "steps" not in formats.record(item, plain, studio)["data"]


# ---- the page, answered by hand ----


def test_the_page_sends_the_tolerance_and_shows_the_steps_and_the_mark():
    """With integrated gradients the page has a tolerance input (hidden otherwise), sends it
    (empty: unset), keeps it in the link, and shows the steps the answer used and, when the
    tolerance was missed, the mark next to the completeness gap."""
    with standalone_page() as page:
        sent = []
        answers = [
            _answer(steps=16, tolerance_missed=False),
            _answer(steps=64, tolerance_missed=True),
            _answer(steps=32),
        ]

        def attribute(route):
            sent.append(json.loads(route.request.post_data))
            body = to_json(pb.AttributeResponse(model="m", results=[answers[len(sent) - 1]]))
            route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

        page.route("**/v1/attribute", attribute)
        assert page.is_hidden("#completeness_tolerance")
        page.select_option("#method", "gradient_shap")
        assert page.is_hidden("#completeness_tolerance")
        page.select_option("#method", "integrated_gradients")
        assert page.is_visible("#completeness_tolerance")
        page.fill("#completeness_tolerance", "0.01")
        page.fill("#steps", "64")
        page.fill("#text", "No fever today")
        page.click("#submit")
        page.wait_for_selector("body[data-state=done]")
        assert sent[-1]["completeness_tolerance"] == 0.01 and sent[-1]["steps"] == 64
        settings = page.text_content("#method-settings")
        tolerance = "chosen for this text by a completeness tolerance of 0.01"
        assert f"(16 steps from pad tokens, {tolerance})" in settings
        assert page.is_visible("#gap") and page.is_hidden("#tolerance-missed")
        assert "completeness_tolerance=0.01" in page.url

        page.evaluate("document.body.dataset.state = 'busy'")
        page.click("#submit")
        page.wait_for_selector("body[data-state=done]")
        assert page.is_visible("#tolerance-missed")
        assert "tolerance not reached at the most steps, 64" in page.text_content(
            "#tolerance-missed"
        )

        page.fill("#completeness_tolerance", "")
        page.evaluate("document.body.dataset.state = 'busy'")
        page.click("#submit")
        page.wait_for_selector("body[data-state=done]")
        assert "completeness_tolerance" not in sent[-1]
        assert "(32 steps from pad tokens)" in page.text_content("#method-settings")
        assert page.is_hidden("#tolerance-missed") and "completeness_tolerance" not in page.url


def test_with_a_tolerance_the_steps_box_is_the_most_and_left_to_the_server_by_default():
    """Typing a tolerance empties a steps box still at the fixed count's default (32 would
    stop the refinement there) and names it the most steps: the request sends 0, the
    server's most (64); the link keeps it so; emptying the tolerance puts 32 back."""
    with standalone_page() as page:
        sent = []

        def attribute(route):
            sent.append(json.loads(route.request.post_data))
            answer = _answer(steps=16, tolerance_missed=False)
            body = to_json(pb.AttributeResponse(model="m", results=[answer]))
            route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

        page.route("**/v1/attribute", attribute)
        page.select_option("#method", "integrated_gradients")
        assert page.input_value("#steps") == "32" and page.text_content("#steps-name") == "Steps"
        page.fill("#completeness_tolerance", "0.01")
        assert page.input_value("#steps") == "" and page.text_content("#steps-name") == "Most steps"
        page.fill("#text", "No fever today")
        page.click("#submit")
        page.wait_for_selector("body[data-state=done]")
        assert sent[-1]["completeness_tolerance"] == 0.01 and sent[-1]["steps"] == 0
        assert "steps=" not in page.url and "completeness_tolerance=0.01" in page.url
        page.reload()
        page.wait_for_selector("body[data-state=done]")
        assert page.input_value("#steps") == "" and page.text_content("#steps-name") == "Most steps"
        assert sent[-1]["steps"] == 0
        page.fill("#completeness_tolerance", "")
        assert page.input_value("#steps") == "32" and page.text_content("#steps-name") == "Steps"
