"""Service behaviour over a real channel: errors and their status codes, order under
concurrency, streaming, batching, cancellation, queue limits, health and reflection."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from conftest import ARCHITECTURE_CASES
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from serving import ServerThread

from gradlight.artifact.manifest import FORWARD
from gradlight.client import Client, Connection
from gradlight.client.render import render_result
from gradlight.runtime.serving.server import ServerSettings
from gradlight.runtime.settings import BatchSettings, ServiceLimits
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1.gradlight_pb2_grpc import AttributorStub

TEXT = "The patient denies chest pain. No evidence of pneumonia."


def _code(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_list_models(tiny_client, engine_for):
    models = {model.name: model for model in tiny_client.list_models().models}
    assert set(models) == set(ARCHITECTURE_CASES)
    bert = models["bert"]
    assert list(bert.labels) == list(engine_for("bert").labels)
    assert bert.max_length == engine_for("bert").max_length
    assert bert.architecture == "BertForSequenceClassification"
    assert bert.execution_provider == "CPUExecutionProvider"
    assert models["distilbert"].problem_type == "multi_label_classification"


@pytest.mark.parametrize(
    ("kwargs", "code", "fragment"),
    [
        ({"texts": []}, "INVALID_ARGUMENT", "texts: is empty"),
        ({"texts": [TEXT, "   "]}, "INVALID_ARGUMENT", "texts[1]: is empty or whitespace"),
        ({"texts": [TEXT, ""]}, "INVALID_ARGUMENT", "texts[1]"),
        (
            {"texts": [TEXT], "labels": ["label_0", "nope"]},
            "INVALID_ARGUMENT",
            "labels[1]: unknown label 'nope'",
        ),
        ({"texts": [TEXT], "labels": ["label_0", "label_0"]}, "INVALID_ARGUMENT", "labels[1]"),
        (
            {"texts": [TEXT], "max_length": 100_000},
            "INVALID_ARGUMENT",
            "max_length: is 100000, above the model's maximum",
        ),
        ({"texts": [TEXT], "max_length": -3}, "INVALID_ARGUMENT", "max_length: is -3"),
        ({"texts": [TEXT], "max_length": 2}, "INVALID_ARGUMENT", "max_length: is 2"),
        ({"texts": [TEXT] * 257}, "INVALID_ARGUMENT", "limit is 256"),
        (
            {"texts": [TEXT], "model": "gpt"},
            "NOT_FOUND",
            "model 'gpt' is not served; serving: bert, roberta",
        ),
        (
            {"texts": [TEXT], "model": ""},
            "INVALID_ARGUMENT",
            "model: is empty but several models are served",
        ),
    ],
)
def test_bad_requests_get_their_status_naming_the_field(tiny_client, kwargs, code, fragment):
    kwargs = {"model": "bert", **kwargs}
    texts = kwargs.pop("texts")
    status, details = _code(lambda: tiny_client.attribute(texts, **kwargs))
    assert status.name == code
    assert fragment in details


def test_predict_allows_empty_text_and_checks_its_fields(tiny_client):
    response = tiny_client.predict(["", TEXT], model="bert")
    assert len(response.results) == 2 and response.results[0].num_tokens == 2
    status, details = _code(lambda: tiny_client.predict([], model="bert"))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and "texts" in details


def test_a_bad_request_does_not_disturb_the_others(tiny_client):
    def good(index):
        text = f"{TEXT} Visit {index}."
        return tiny_client.attribute([text], model="bert").results[0].text == text

    def bad(_):
        return _code(lambda: tiny_client.attribute(["  "], model="bert"))[0]

    with ThreadPoolExecutor(16) as pool:
        goods = [pool.submit(good, i) for i in range(24)]
        bads = [pool.submit(bad, i) for i in range(8)]
        assert all(future.result() for future in goods)
        assert {future.result() for future in bads} == {grpc.StatusCode.INVALID_ARGUMENT}


def test_results_keep_their_order_under_32_concurrent_clients(tiny_server):
    def client_work(client_index):
        with Client(tiny_server.address) as client:
            for round_index in range(3):
                texts = [
                    f"Note {client_index}-{round_index}-{k}: {TEXT[: 10 + 7 * k]}"
                    for k in range(1 + client_index % 4)
                ]
                response = client.attribute(
                    texts, model="roberta", sentence_attributions=client_index % 2 == 0
                )
                assert [result.text for result in response.results] == texts
                for result, text in zip(response.results, texts, strict=True):
                    for token in result.tokens:
                        assert 0 <= token.start <= token.end <= len(text)
        return True

    with ThreadPoolExecutor(32) as pool:
        assert all(pool.map(client_work, range(32)))


def test_gradient_shap_with_a_seed_answers_the_same_twice(tiny_client):
    """``Client.attribute``'s method arguments reach the server: with a seed, GradientSHAP
    gives the same answer again; another seed another one; unset, the server draws one and
    reports it, and sending it back gives that answer again."""
    texts = [TEXT, "No fever."]

    def shap(**more):
        options = {"model": "bert", "method": "gradient_shap", "samples": 4, "raw_scores": True}
        return tiny_client.attribute(texts, **options, **more).results

    def raw(results):
        return [np.array([list(t.raw_scores) for t in result.tokens]) for result in results]

    first, second = shap(seed=3), shap(seed=3)
    for a, b in zip(raw(first), raw(second), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for result in first:
        assert (result.method, result.seed, len(result.completeness_gaps)) == (
            "gradient_shap", 3, len(result.labels),
        )  # fmt: skip
    assert not all(np.allclose(a, b) for a, b in zip(raw(first), raw(shap(seed=4)), strict=True))
    drawn = shap()
    assert drawn[0].seed == drawn[1].seed != 0  # one seed per request
    for a, b in zip(raw(drawn), raw(shap(seed=drawn[0].seed)), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    plain = tiny_client.attribute(texts, model="bert").results[0]
    assert plain.method == "input_x_gradient" and not plain.completeness_gaps


def test_the_terminal_shows_the_method_gaps_and_faithfulness(tiny_client):
    (result,) = tiny_client.attribute(
        [TEXT], model="bert", method="integrated_gradients", steps=4, faithfulness=True,
        removal="mask", seed=5,
    ).results  # fmt: skip
    shown = render_result(result, None, color=False)
    assert "tokens by integrated_gradients, coloured for label" in shown
    assert "completeness gap: " in shown and "seed: 5" in shown
    assert "logit change) at 4 steps" in shown and "tolerance not reached" not in shown
    assert f"faithfulness over {result.faithfulness.words} words" in shown
    plain = render_result(tiny_client.attribute([TEXT], model="bert").results[0], None, color=False)
    assert "completeness gap" not in plain and "faithfulness" not in plain and "seed" not in plain


def test_attribute_stream_answers_each_request_in_order(tiny_client):
    requests = [
        pb.AttributeRequest(
            model="bert", texts=[f"{TEXT} ({i})"] * (1 + i % 3), sentence_attributions=i % 2 == 1
        )
        for i in range(20)
    ]
    responses = list(tiny_client.attribute_stream(requests, timeout=60))
    assert len(responses) == 20
    for request, response in zip(requests, responses, strict=True):
        assert [result.text for result in response.results] == list(request.texts)
        assert bool(response.results[0].sentences) == request.sentence_attributions


def test_attribute_stream_names_the_bad_request(tiny_client):
    requests = [
        pb.AttributeRequest(model="bert", texts=[TEXT]),
        pb.AttributeRequest(model="bert", texts=[]),
    ]
    stream = tiny_client.attribute_stream(requests, timeout=60)
    assert next(stream).results[0].text == TEXT
    with pytest.raises(grpc.RpcError) as info:
        next(stream)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests[1]: texts: is empty" in info.value.details()


def test_concurrent_requests_share_one_call_padded_to_their_longest_text(engine_for):
    # A call as dear as a GPU's: everything the limits allow shares one call.
    batch = BatchSettings(max_wait_ms=300, max_batch_size=64, call_cost_tokens=4096)
    settings = ServerSettings(port=0, batch=batch)
    with (
        ServerThread({"bert": engine_for("bert")}, settings) as server,
        Client(server.address) as client,
    ):
        batcher = server.running.registry.models["bert"].batcher
        before = batcher.calls
        texts = ["Short note.", TEXT + " " + TEXT, "Blood pressure 132/84."]
        with ThreadPoolExecutor(3) as pool:
            lengths = list(
                pool.map(lambda text: client.predict([text]).results[0].num_tokens, texts)
            )
        assert batcher.calls == before + 1
        assert batcher.history[-1].rows == 3
        assert batcher.history[-1].width == max(lengths) < engine_for("bert").max_length


def test_on_a_cpu_rows_of_very_different_lengths_get_calls_of_their_own(engine_for):
    settings = ServerSettings(port=0, batch=BatchSettings(max_wait_ms=300, max_batch_size=64))
    with (
        ServerThread({"bert": engine_for("bert")}, settings) as server,
        Client(server.address) as client,
    ):
        batcher = server.running.registry.models["bert"].batcher
        assert batcher.call_cost_tokens == 16  # the CPU default
        before = batcher.calls
        texts = ["Short note.", "Brief note.", " ".join([TEXT] * 8), " ".join([TEXT] * 9)]
        with ThreadPoolExecutor(len(texts)) as pool:
            lengths = list(
                pool.map(lambda text: client.predict([text]).results[0].num_tokens, texts)
            )
        calls = list(batcher.history)[-(batcher.calls - before) :]
        # Padding the short notes to the long ones would cost far more than a second call.
        assert sorted((call.rows, call.width) for call in calls) == [
            (2, max(lengths[:2])),
            (2, max(lengths[2:])),
        ]


def test_sentence_variants_go_through_one_call(engine_for):
    with ServerThread({"bert": engine_for("bert")}) as server, Client(server.address) as client:
        batcher = server.running.registry.models["bert"].batcher
        text = "One finding. Two findings here. Three. Four of them. Five in all."
        before = batcher.calls
        result = client.attribute(
            [text], token_attributions=False, sentence_attributions=True
        ).results[0]
        assert len(result.sentences) == 5
        assert batcher.calls == before + 1
        assert batcher.history[-1].rows == 6  # the full text and five variants
        # Asked with token attributions (fp32), the full text's logits are the attribution
        # graph's: the forward runs the five variants alone, and the scores are the same.
        before = batcher.calls
        both = client.attribute([text], sentence_attributions=True).results[0]
        calls = list(batcher.history)[-(batcher.calls - before) :]
        assert [call.rows for call in calls if call.graph == FORWARD] == [5]
        np.testing.assert_allclose(
            [list(s.scores) for s in both.sentences],
            [list(s.scores) for s in result.sentences],
            atol=1e-6,
        )
        np.testing.assert_allclose(both.probabilities, result.probabilities, atol=1e-6)


def test_token_budget_splits_calls(engine_for):
    settings = ServerSettings(port=0, batch=BatchSettings(max_tokens_per_batch=256))
    with (
        ServerThread({"bert": engine_for("bert")}, settings) as server,
        Client(server.address) as client,
    ):
        batcher = server.running.registry.models["bert"].batcher
        before = batcher.calls
        texts = [" ".join([TEXT] * 8)] * 6  # each cut to the model's 64 tokens: 4 per call
        response = client.predict(texts)
        assert len(response.results) == 6
        calls = list(batcher.history)[-(batcher.calls - before) :]
        assert len(calls) == 2 and all(call.rows * call.width <= 256 for call in calls)


def test_on_a_cpu_calls_hold_at_most_1024_tokens_unless_told(engine_for, caplog):
    with (
        caplog.at_level(logging.INFO, logger="gradlight.runtime.serving.server"),
        ServerThread({"bert": engine_for("bert")}) as server,
        Client(server.address) as client,
    ):
        batcher = server.running.registry.models["bert"].batcher
        assert batcher.max_tokens_per_call == 1024  # the CPU default, said at startup
        assert "calls of at most 1024 padded tokens, a call costing 16" in caplog.text
        before = batcher.calls
        texts = [" ".join([TEXT] * 8)] * 20  # each cut to the model's 64 tokens
        assert len(client.predict(texts).results) == 20
        calls = list(batcher.history)[-(batcher.calls - before) :]
        assert sum(call.rows for call in calls) == 20
        assert len(calls) == 2 and all(call.rows * call.width <= 1024 for call in calls)


def test_full_queue_is_refused_with_resource_exhausted(engine_for):
    settings = ServerSettings(
        port=0, batch=BatchSettings(max_queue_size=2, max_wait_ms=500, max_batch_size=64)
    )
    with (
        ServerThread({"bert": engine_for("bert")}, settings) as server,
        # Without retries, to see the refusal itself (Client retries it by default).
        Client(connection=Connection(server.address, retry=None)) as client,
    ):
        first = threading.Thread(target=lambda: client.predict([TEXT, TEXT]))
        first.start()
        time.sleep(0.15)  # the first request waits in the queue for companions
        status, details = _code(lambda: client.predict([TEXT]))
        first.join()
        assert status == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue" in details


def test_deadline_passes_in_the_queue_and_the_work_is_dropped(engine_for):
    settings = ServerSettings(port=0, batch=BatchSettings(max_wait_ms=400, max_batch_size=64))
    with (
        ServerThread({"bert": engine_for("bert")}, settings) as server,
        Client(server.address) as client,
    ):
        batcher = server.running.registry.models["bert"].batcher
        before = batcher.calls
        late = Client(server.address, timeout=0.1)
        status, _ = _code(lambda: late.predict([TEXT] * 3))
        assert status == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.6)
        assert batcher.calls == before  # nothing computed for nobody
        assert batcher.dropped_rows >= 3
        assert client.predict([TEXT]).results[0].text == TEXT
        late.close()


def test_health_reflection_and_shutdown(engine_for):
    server = ServerThread({"bert": engine_for("bert")}).start()
    channel = grpc.insecure_channel(server.address)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "gradlight.v1.Attributor"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    )
    names = {service.name for service in answer.list_services_response.service}
    assert {"gradlight.v1.Attributor", "grpc.health.v1.Health"} <= names

    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 1.0})
    stopper.start()
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    stopper.join()
    stub = AttributorStub(channel)
    status, _ = _code(lambda: stub.Predict(pb.PredictRequest(texts=[TEXT]), timeout=2))
    assert status == grpc.StatusCode.UNAVAILABLE
    channel.close()


def test_settings_are_validated():
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchSettings(max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        BatchSettings(max_wait_ms=-1)
    with pytest.raises(ValueError, match="call_cost_tokens"):
        BatchSettings(call_cost_tokens=-1)
    with pytest.raises(ValueError, match="max_texts_per_request"):
        ServiceLimits(max_texts_per_request=0)
    with pytest.raises(ValueError, match="port"):
        ServerSettings(port=70000)


def test_messages_over_the_size_limit_are_refused(engine_for):
    settings = ServerSettings(port=0, limits=ServiceLimits(max_receive_message_bytes=64 * 1024))
    with (
        ServerThread({"bert": engine_for("bert")}, settings) as server,
        Client(server.address) as client,
    ):
        status, _ = _code(lambda: client.predict(["x" * 100_000]))
        assert status == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.predict([TEXT]).results[0].text == TEXT
