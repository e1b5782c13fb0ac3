"""The bulk job decides "retry", "line by line", "bad line" or "stop" from an error's code,
retry delay and field, never from its message: with every message the server sends reworded,
a real job over a real server makes exactly the same decisions."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types

import grpc
import pytest
from serving import FaultyEngine, ServerThread, poisoning

from gradlight.bulk.backends import BackendError, ModelFacts, ServerBackend
from gradlight.bulk.explaining import Decision, RequestOptions, build_request, decide
from gradlight.bulk.formats import OutputOptions
from gradlight.bulk.job import (
    JobOptions,
    _request_settings,
    run_job,
    unit_limits,
    with_job_seed,
)
from gradlight.bulk.lines import Item
from gradlight.bulk.pipeline import AsyncPipeline
from gradlight.cli import method_flags
from gradlight.client.client import Client, method_fields
from gradlight.runtime.explanation import faithfulness
from gradlight.runtime.explanation.requests import AttributeOptions
from gradlight.runtime.serving import status
from gradlight.runtime.serving.server import ServerSettings
from gradlight.runtime.settings import ServiceLimits
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.wire import methods as registry
from gradlight.wire.error_details import ErrorDetails

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "lines", "decision"),
    [
        (ErrorDetails(Code.UNAVAILABLE, ""), 3, Decision.RETRY),
        (ErrorDetails(Code.CANCELLED, ""), 1, Decision.RETRY),
        (ErrorDetails(Code.DEADLINE_EXCEEDED, ""), 1, Decision.RETRY),
        (ErrorDetails(Code.RESOURCE_EXHAUSTED, "", retry_after_s=0.2), 3, Decision.RETRY),
        (ErrorDetails(Code.RESOURCE_EXHAUSTED, ""), 3, Decision.PER_LINE),  # too large
        (ErrorDetails(Code.RESOURCE_EXHAUSTED, ""), 1, Decision.BAD_LINE),
        (ErrorDetails(Code.INVALID_ARGUMENT, "", field="texts[2]"), 3, Decision.PER_LINE),
        (ErrorDetails(Code.INVALID_ARGUMENT, "", field="texts[0]"), 1, Decision.BAD_LINE),
        (ErrorDetails(Code.INVALID_ARGUMENT, "", field="entities"), 1, Decision.BAD_LINE),
        (
            ErrorDetails(Code.INVALID_ARGUMENT, "", field="entities[0].spans[3]"),
            1,
            Decision.BAD_LINE,
        ),
        # The request's size (its texts, their windows) over the server's limit: line by line.
        (ErrorDetails(Code.INVALID_ARGUMENT, "", field="texts"), 3, Decision.PER_LINE),
        (ErrorDetails(Code.INVALID_ARGUMENT, "", field="texts"), 1, Decision.BAD_LINE),
        (ErrorDetails(Code.INVALID_ARGUMENT, "", field="max_length"), 1, Decision.STOP),
        (ErrorDetails(Code.INVALID_ARGUMENT, "", field="entity_marking.open"), 2, Decision.STOP),
        (ErrorDetails(Code.INVALID_ARGUMENT, ""), 1, Decision.STOP),  # no field: not a line's
        (ErrorDetails(Code.INTERNAL, ""), 2, Decision.PER_LINE),
        (ErrorDetails(Code.INTERNAL, ""), 1, Decision.BAD_LINE),
        (ErrorDetails(Code.NOT_FOUND, "", field="model"), 1, Decision.STOP),
        (ErrorDetails(Code.UNAUTHENTICATED, ""), 1, Decision.STOP),
    ],
)
def test_decisions_follow_code_retry_delay_and_field(error, lines, decision):
    assert decide(error, lines) is decision


POISON = "Poisoned note: its rows fail in ONNX Runtime."
TEXT = "The patient denies chest pain. No fever."


def _lines() -> list[dict]:
    many_spans = [{"start": 4, "end": 11}] * 10  # over the server's 4 classifications a request
    return [
        {"id": 1, "text": TEXT},
        {"id": 2, "text": "Possible pneumonia."},
        {"id": 3, "text": TEXT, "spans": many_spans},
        {"id": 4, "text": "Fever since Monday."},
        {"id": 5, "text": POISON},
        {"id": 6, "text": "She reports a cough."},
    ]


def _job(server: ServerThread, tmp_path, name: str, max_length: int = 0):
    """Run the bulk job; ``(records' ids, bad lines with reasons, the error that stopped it)``."""
    source = tmp_path / f"{name}.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in _lines()))
    output = tmp_path / f"{name}.out.jsonl"
    request = RequestOptions(max_length=max_length)
    options = JobOptions(request, OutputOptions(), lines_per_request=2, progress=False)
    pipeline = AsyncPipeline(ServerBackend(server.address), request)
    stopped = None
    try:
        run_job(source, output, pipeline, options)
    except BackendError as exc:
        stopped = exc.details
    finally:
        pipeline.close()
    records = [json.loads(line)["id"] for line in output.read_text().splitlines()]
    errors_path = output.with_name(output.name + ".errors.jsonl")
    bad = {}
    if errors_path.exists():
        bad = {e["line"]: e["error"] for e in map(json.loads, errors_path.read_text().splitlines())}
    return records, bad, stopped


def test_reworded_messages_leave_every_decision_unchanged(engine_for, tmp_path, monkeypatch):
    engine = FaultyEngine(engine_for("bert"))
    engine.fault = poisoning(engine, POISON)
    settings = ServerSettings(port=0, limits=ServiceLimits(max_texts_per_request=4))
    with ServerThread({"bert": engine}, settings) as server:
        plain = _job(server, tmp_path, "plain")
        plain_stop = _job(server, tmp_path, "plain-stop", max_length=2)
        said = status.status_of
        monkeypatch.setattr(
            status,
            "status_of",
            lambda exc: dataclasses.replace(
                said(exc), message="something went wrong", description="reworded"
            ),
        )
        reworded = _job(server, tmp_path, "reworded")
        reworded_stop = _job(server, tmp_path, "reworded-stop", max_length=2)

    records, bad, stopped = plain
    assert records == [1, 2, 4, 6] and stopped is None
    assert set(bad) == {3, 5}
    assert bad[3].startswith("spans: ") and "inference failed" in bad[5]
    assert reworded[0] == records and reworded[2] is None
    assert reworded[1] == {3: "spans: reworded", 5: "something went wrong"}
    # A refusal of the options, not of a line: the job stops at the first request, either way.
    for stop in (plain_stop, reworded_stop):
        assert stop[:2] == ([], {})
        assert (stop[2].code, stop[2].field) == (Code.INVALID_ARGUMENT, "max_length")
    assert reworded_stop[2].message == "something went wrong"


def test_method_options_reach_the_request_and_the_checkpoint(tmp_path):
    items = [Item(1, "No fever.")]
    plain = build_request(items, RequestOptions())
    assert (plain.method, plain.steps, plain.faithfulness) == ("", 0, False)
    assert not plain.HasField("stdev") and not plain.HasField("seed")  # the server's defaults
    options = RequestOptions(
        method="gradient_shap", baseline="zeros", samples=4, stdev=0.0, seed=0,
        faithfulness=True, removal="mask",
    )  # fmt: skip
    request = build_request(items, options)
    assert (request.method, request.baseline, request.samples, request.removal) == (
        "gradient_shap", "zeros", 4, "mask",
    )  # fmt: skip
    assert request.HasField("stdev") and request.stdev == 0.0
    assert request.HasField("seed") and request.seed == 0 and request.faithfulness
    # The checkpoint records the method options, and none at their defaults: a job started
    # before they existed resumes.
    assert set(_request_settings(RequestOptions())) == {
        "sentences", "max_length", "markers", "context_chars",
    }  # fmt: skip
    assert _request_settings(options)["seed"] == 0 and "steps" not in _request_settings(options)
    # One seed per job: picked once, then the one its checkpoint records (unless --restart).
    job = JobOptions(dataclasses.replace(options, seed=None), OutputOptions())
    out = tmp_path / "out.jsonl"
    picked = with_job_seed(job, out).request.seed
    assert isinstance(picked, int) and with_job_seed(job, out).request.seed != picked
    tmp_path.joinpath("out.jsonl.checkpoint.json").write_text(
        json.dumps({"settings": {"request": {"seed": 42}}})
    )
    assert with_job_seed(job, out).request.seed == 42
    assert with_job_seed(dataclasses.replace(job, restart=True), out).request.seed != 42
    assert with_job_seed(JobOptions(RequestOptions(), OutputOptions()), out).request.seed is None
    with pytest.raises(ValueError, match="seed"):
        run_job(tmp_path / "in.jsonl", out, None, job)  # type: ignore[arg-type]
    # Requests of a path method hold fewer lines; a line alone may hold more spans.
    facts = ModelFacts("m", ("a", "b", "c"), False, 128, 256, "x")
    assert unit_limits(RequestOptions(), facts) == (256, 256)
    ig = RequestOptions(method="integrated_gradients", steps=8)  # 3 x 8 + 1 rows a text
    assert unit_limits(ig, facts) == (512 // 25, 2048 // 25)
    assert unit_limits(dataclasses.replace(ig, steps=512), facts) == (1, 1)


def _recording_client() -> tuple[Client, list[pb.AttributeRequest]]:
    """A client whose Attribute calls are recorded, not sent."""
    sent: list[pb.AttributeRequest] = []
    client = Client.__new__(Client)
    client.timeout, client._metadata = None, ()
    client._stub = types.SimpleNamespace(Attribute=lambda request, **_: sent.append(request))
    return client, sent


def test_every_method_field_is_one_name_on_every_side():
    """Each field of the registry (gradlight.wire.methods) is a CLI flag with its choices, a
    client keyword, an AttributeRequest field of the same type (optional where unset is None),
    and a field of the runtime's and the bulk job's options, unset by default."""
    parser = argparse.ArgumentParser()
    method_flags.add_method_flags(parser)
    flags = {action.dest: action for action in parser._actions}
    proto = pb.AttributeRequest.DESCRIPTOR.fields_by_name
    client, sent_requests = _recording_client()
    for field in registry.FIELDS:
        flag = flags[field.name]
        assert flag.option_strings == [field.flag]
        assert tuple(flag.choices or ()) == field.choices
        assert method_flags.method_options(parser.parse_args([]))[field.name] == field.unset
        value = field.default if field.default is not None else 1
        client.attribute(["x"], **{field.name: value})
        assert getattr(sent_requests[-1], field.name) == pytest.approx(value)
        assert isinstance(getattr(pb.AttributeRequest(), field.name), field.type)
        assert proto[field.name].has_presence == field.optional
        for options in (AttributeOptions(), RequestOptions()):
            assert getattr(options, field.name) == field.unset
    with pytest.raises(TypeError, match="steps"):
        method_fields(step=8)
    # The runtime's removals are the registry's.
    assert faithfulness.REMOVALS == registry.REMOVALS
