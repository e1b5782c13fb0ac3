"""The HTTP JSON endpoints on the real server: the same answers as gRPC, protobuf's JSON mapping,
and a clear 4xx naming the field for every kind of bad body."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from http_json import grpc_json, request, request_json

TEXT = "The patient denies chest pain. No evidence of pneumonia."
IG = {
    "model": "bert",
    "texts": [TEXT],
    "token_attributions": True,
    "method": "integrated_gradients",
}


def test_attribute_over_http_equals_grpc(tiny_server, tiny_client):
    texts = [TEXT, "Café résumé naïve — 東京 😀."]
    status, answer = request_json(
        tiny_server.http_url + "v1/attribute",
        {
            "model": "bert",
            "texts": texts,
            "token_attributions": True,
            "sentence_attributions": True,
            "raw_scores": True,
        },
    )
    assert status == 200
    expected = tiny_client.attribute(
        texts, model="bert", sentence_attributions=True, raw_scores=True
    )
    assert answer == grpc_json(expected)
    assert answer["results"][1]["text"] == texts[1]  # non-ASCII survives the round trip


def test_predict_models_and_camel_case_names(tiny_server, tiny_client):
    url = tiny_server.http_url
    status, answer = request_json(url + "v1/predict", {"model": "roberta", "texts": [TEXT]})
    assert status == 200
    assert answer == grpc_json(tiny_client.predict([TEXT], model="roberta"))
    # protobuf's JSON names are accepted as well as the proto names.
    status, camel = request_json(
        url + "v1/attribute",
        {"model": "bert", "texts": [TEXT], "tokenAttributions": True, "maxLength": 12},
    )
    assert status == 200 and camel["results"][0]["num_tokens"] == 12
    assert len(camel["results"][0]["tokens"]) == 12
    status, models = request_json(url + "v1/models")
    assert status == 200 and models == grpc_json(tiny_client.list_models())


CLASSIFIED = ["text", "labels", "probabilities", "predicted_label", "truncated"]
CLASSIFIED += ["predicted_labels", "num_tokens"]
TOKEN = ["token_id", "token", "start", "end", "special", "scores", "marker"]


def test_answers_carry_the_fields_that_apply_in_proto_order(tiny_server):
    """A prediction has no attribution fields; input x gradient no seed and, unasked, no raw
    scores; a field meaningful at its default stays; keys in the proto's order every time."""
    url = tiny_server.http_url
    status, answer = request_json(url + "v1/predict", {"model": "bert", "texts": [TEXT, "x"]})
    assert status == 200 and list(answer) == ["model", "results"]
    assert [list(result) for result in answer["results"]] == [CLASSIFIED, CLASSIFIED]
    assert answer["results"][0]["truncated"] is False
    body = {"model": "bert", "texts": [TEXT], "token_attributions": True}
    status, answer = request_json(url + "v1/attribute", body)
    assert status == 200
    result = answer["results"][0]
    assert list(result) == [*CLASSIFIED[:5], "tokens", *CLASSIFIED[5:], "method"]
    assert result["method"] == "input_x_gradient"
    assert all(list(token) == TOKEN for token in result["tokens"])
    assert result["tokens"][0]["start"] == 0 and result["tokens"][0]["special"] is True
    status, answer = request_json(url + "v1/attribute", {**body, "raw_scores": True})
    tokens = answer["results"][0]["tokens"]
    assert all(list(token) == [*TOKEN[:6], "raw_scores", "marker"] for token in tokens)
    shap = {**body, "method": "gradient_shap", "samples": 2, "seed": "7"}
    status, answer = request_json(url + "v1/attribute", shap)
    assert status == 200, answer
    result = answer["results"][0]
    assert list(result)[-4:] == ["method", "completeness_gaps", "seed", "steps"]
    assert result["seed"] == "7" and result["steps"] == 2
    # Integrated gradients: the steps it used and whether a completeness tolerance was missed
    # (false without one), and no seed.
    ig = {**body, "method": "integrated_gradients", "steps": 4}
    status, answer = request_json(url + "v1/attribute", ig)
    assert status == 200, answer
    result = answer["results"][0]
    assert list(result)[-4:] == ["method", "completeness_gaps", "steps", "tolerance_missed"]
    assert (result["steps"], result["tolerance_missed"]) == (4, False)


def test_a_completeness_tolerance_over_http_equals_grpc(tiny_server, tiny_client):
    """``completeness_tolerance`` (and its JSON name) reaches the runtime: the answer is
    gRPC's for the same request, each text with the steps it got (a Fejer level up
    to ``steps``) and whether the tolerance was missed."""
    texts = [TEXT, "No fever."]
    fields = {"method": "integrated_gradients", "steps": 16, "labels": ["label_0", "label_2"]}
    expected = grpc_json(
        tiny_client.attribute(texts, model="bert", completeness_tolerance=0.25, **fields)
    )
    for key in ("completeness_tolerance", "completenessTolerance"):
        body = {"model": "bert", "texts": texts, "token_attributions": True, key: 0.25, **fields}
        status, answer = request_json(tiny_server.http_url + "v1/attribute", body)
        assert status == 200, answer
        assert answer == expected
    for result in answer["results"]:
        assert result["steps"] in (8, 16) and isinstance(result["tolerance_missed"], bool)
        assert result["tolerance_missed"] is False or result["steps"] == 16


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        (b"{not json", 400, "INVALID_ARGUMENT", "body: is not valid JSON"),
        (b"\xff\xfe", 400, "INVALID_ARGUMENT", "body: is not UTF-8"),
        ([TEXT], 400, "INVALID_ARGUMENT", "body: must be a JSON object"),
        ({"model": "bert", "textz": [TEXT]}, 400, "INVALID_ARGUMENT", "textz: is not a field"),
        ({"model": "bert", "texts": TEXT}, 400, "INVALID_ARGUMENT", "texts: must be a list"),
        ({"model": "bert", "texts": [1, 2]}, 400, "INVALID_ARGUMENT", "texts: must be a list"),
        (
            {"model": "bert", "texts": [TEXT], "max_length": "long"},
            400,
            "INVALID_ARGUMENT",
            'max_length: must be a 32-bit integer, got "long"',
        ),
        (
            {"model": "bert", "texts": [TEXT], "raw_scores": "yes"},
            400,
            "INVALID_ARGUMENT",
            "raw_scores: must be true or false",
        ),
        ({"model": "bert", "texts": []}, 400, "INVALID_ARGUMENT", "texts: is empty"),
        (
            {"model": "bert", "texts": [TEXT, " "], "token_attributions": True},
            400,
            "INVALID_ARGUMENT",
            "texts[1]: is empty or whitespace only",
        ),
        (
            {"model": "bert", "texts": [TEXT], "labels": ["nope"]},
            400,
            "INVALID_ARGUMENT",
            "labels[0]: unknown label 'nope'",
        ),
        (
            {"model": "bert", "texts": [TEXT], "max_length": 100_000},
            400,
            "INVALID_ARGUMENT",
            "max_length: is 100000",
        ),
        ({"model": "gpt", "texts": [TEXT]}, 404, "NOT_FOUND", "model 'gpt' is not served"),
        (
            {"model": "bert", "texts": [TEXT], "completeness_tolerance": "small"},
            400,
            "INVALID_ARGUMENT",
            'completeness_tolerance: must be a number, got "small"',
        ),
        (
            {**IG, "completeness_tolerance": 1.5},
            400,
            "INVALID_ARGUMENT",
            "completeness_tolerance: is 1.5; use a fraction",
        ),
        (
            {**IG, "completeness_tolerance": "NaN"},
            400,
            "INVALID_ARGUMENT",
            "completeness_tolerance: is nan",
        ),
        (
            {**IG, "completeness_tolerance": 0.01, "integration": "riemann_left"},
            400,
            "INVALID_ARGUMENT",
            "integration: is 'riemann_left', but completeness_tolerance refines",
        ),
        (
            {**IG, "completeness_tolerance": 0.01, "steps": 12},
            400,
            "INVALID_ARGUMENT",
            "steps: is 12; with completeness_tolerance",
        ),
    ],
)
def test_bad_bodies_get_a_status_naming_the_field(tiny_server, body, status, code, fragment):
    got, answer = request_json(tiny_server.http_url + "v1/attribute", body)
    assert got == status, answer
    assert answer["error"]["code"] == code
    assert fragment in answer["error"]["message"]


def test_odd_json_is_a_clear_400(tiny_server):
    url = tiny_server.http_url + "v1/attribute"
    status, answer = request_json(url, b'{"model": "bert", "texts": ["\\ud800"]}')  # lone surrogate
    assert (
        status == 400
        and "texts: must be a list of strings (valid Unicode)" in (answer["error"]["message"])
    )
    status, answer = request_json(url, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and answer["error"]["message"].startswith("body: is not")
    status, answer = request_json(url, b'{"max_length": ' + b"9" * 5000 + b"}")
    assert status == 400 and answer["error"]["message"].startswith("body: is not")


def test_a_rebound_host_name_is_refused(tiny_server):
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1."""
    port = tiny_server.running.http.port
    for host, allowed in [
        (f"evil.example:{port}", False),
        (f"127.0.0.1.evil.example:{port}", False),
        (f"localhost:{port}", True),
        (f"127.0.0.1:{port}", True),
        (f"[::1]:{port}", True),
    ]:
        status, _, payload = request(tiny_server.http_url + "v1/models", headers={"Host": host})
        assert (status == 200) == allowed, host
        if not allowed:
            assert status == 403
            assert "not a loopback name" in json.loads(payload)["error"]["message"]


def test_transport_errors_are_json_too(tiny_server):
    url = tiny_server.http_url
    status, answer = request_json(
        url + "v1/attribute", {"texts": [TEXT]}, content_type="text/plain"
    )
    assert status == 415 and "Content-Type: is 'text/plain'" in answer["error"]["message"]
    big = json.dumps({"model": "bert", "texts": ["x" * (9 * 1024 * 1024)]}).encode()
    status, answer = request_json(url + "v1/attribute", big)
    assert status == 413 and "body: is larger than the limit" in answer["error"]["message"]
    status, answer = request_json(url + "v1/nothing-here")
    assert status == 404 and answer["error"]["code"] == "NOT_FOUND"
    status, answer = request_json(url + "v1/attribute")  # GET
    assert status == 405
    status, answer = request_json(url + "healthz")
    assert status == 200 and answer == {"status": "SERVING"}
    # And the server still answers after all of that.
    status, answer = request_json(url + "v1/predict", {"model": "bert", "texts": [TEXT]})
    assert status == 200 and answer["results"][0]["text"] == TEXT


def test_the_page_is_self_contained_and_locked_down(tiny_server):
    status, headers, html = request(tiny_server.http_url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = html.decode()
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
    assert "connect-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_in_flight_http_requests_finish_during_a_graceful_stop(engine_for):
    from concurrent.futures import ThreadPoolExecutor

    from serving import ServerThread

    from gradlight.runtime.serving.server import ServerSettings
    from gradlight.runtime.settings import BatchSettings

    settings = ServerSettings(port=0, http_port=0, batch=BatchSettings(max_wait_ms=500))
    server = ServerThread({"bert": engine_for("bert")}, settings).start()
    url = server.http_url
    with ThreadPoolExecutor(4) as pool:
        # The only model is served: requests may leave "model" out.
        asked = [
            pool.submit(request_json, url + "v1/predict", {"texts": [f"{TEXT} {i}"]})
            for i in range(4)
        ]
        time.sleep(0.2)  # the requests wait in the batcher (max_wait_ms=500)
        server.stop(grace=5.0)
        answers = [future.result(30) for future in asked]
    assert [status for status, _ in answers] == [200] * 4
    assert [answer["results"][0]["text"] for _, answer in answers] == [
        f"{TEXT} {i}" for i in range(4)
    ]
    with pytest.raises(urllib.error.URLError):  # and then the port is closed
        urllib.request.urlopen(url + "healthz", timeout=5)


def test_page_is_shipped_as_package_data():
    from gradlight.runtime.serving.web import Page

    page = Page.load()
    assert page.html.startswith(b"<!doctype html>")
    assert page.csp.count("sha256-") == 2  # one inline script, one inline style
