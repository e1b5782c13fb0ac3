"""Long texts everywhere outside the runtime core: ``gradlight serve``'s flags reach the server
(its startup log says them; a long text sent without ``long_texts`` comes back as windows) and
a bad value is refused naming its flag; the Python client's keywords, ``gradlight attribute``'s
flags and its rendering; ``gradlight explain``'s flags in every output format, with the artifact
and against the server, every offset indexing the whole text; the bulk job's row budget."""

from __future__ import annotations

import itertools
import json
import re
import urllib.request

import grpc
import pytest
from bulk_formats import assert_same_records, check_label_studio, check_prodigy, html_text
from explain_runs import explain, read_records, write_input
from processes import serve_process

from gradlight.bulk.backends import ModelFacts
from gradlight.bulk.evidence import words
from gradlight.bulk.explaining import ROWS_PER_REQUEST, RequestOptions
from gradlight.bulk.job import _chunks, line_cost, unit_limits
from gradlight.bulk.lines import Item, Span
from gradlight.cli import long_text_flags
from gradlight.cli.main import main
from gradlight.client import Client
from gradlight.client.render import render_result
from gradlight.runtime.explanation import windows as runtime_windows
from gradlight.runtime.settings import LONG_TEXTS


def _long(number: int = 0) -> str:
    """About 200 tokens of the tiny BERT (64 a window): 7 windows at its default stride."""
    return " ".join(
        f"Café résumé 病院 visit {number}.{i}: the patient denies chest pain. 😀 Fever present."
        for i in range(8)
    )


LONG = _long()
SHORT = "No fever today."
LABELS = ["label_0", "label_1", "label_2"]  # the tiny BERT's
MAX_WINDOWS = 40  # the server's limit per request: the input's long lines together need more


@pytest.fixture(scope="module")
def windows_server(exported):
    """``gradlight serve`` of the tiny BERT, reading long texts as windows by default."""
    server = serve_process(
        str(exported("bert")), "--name", "bert",
        "--long-texts", "windows", "--max-windows-per-request", str(MAX_WINDOWS),
    )  # fmt: skip
    yield server
    assert server.terminate() == 0


def test_serve_flags_reach_the_server(windows_server):
    log = windows_server.text_log()
    assert (
        "long texts: DocumentSettings(long_texts='windows', window_stride=0, "
        f"max_document_tokens=32768, max_windows_per_request={MAX_WINDOWS})"
    ) in log
    with Client(windows_server.address) as client:
        [result] = client.predict([LONG]).results  # long_texts left to the server
        assert not result.truncated and len(result.windows) >= 3 and result.aggregation == "mean"
        [result] = client.attribute([LONG]).results
        tokens = [token for token in result.tokens if not token.special]
        assert tokens[-1].end == len(LONG) and len(result.windows) >= 3
        with pytest.raises(grpc.RpcError) as refused:
            client.predict([LONG] * 10)  # 70 windows
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {MAX_WINDOWS}" in refused.value.details()


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (("--window-stride", "-1"), "--window-stride must be between 0 and 1000000, got -1"),
        (("--max-document-tokens", "0"), "--max-document-tokens must be between 1 and"),
        (("--max-windows-per-request", "0"), "--max-windows-per-request must be between 1"),
    ],
)
def test_serve_refuses_bad_long_text_settings_naming_the_flag(flags, said, exported, capsys):
    assert main(["serve", str(exported("bert")), "--port", "0", "--no-http", *flags]) == 2
    assert f"gradlight serve: error: {said}" in capsys.readouterr().err


def test_the_client_sends_the_long_text_fields_and_renders_windows(windows_server, capsys):
    dense_fields = {"window_stride": 20, "aggregation": "max"}
    with Client(windows_server.address) as client:
        [cut] = client.attribute([LONG], long_texts="truncate").results
        [default] = client.predict([LONG]).results
        [dense] = client.attribute([LONG], **dense_fields).results  # windows: the server's
        [predicted] = client.predict([LONG], long_texts="windows", **dense_fields).results
    assert cut.truncated and not cut.windows and not cut.aggregation
    assert dense.aggregation == "max" and len(dense.windows) > len(default.windows)
    assert list(predicted.probabilities) == pytest.approx(list(dense.probabilities), abs=1e-5)
    shown = render_result(dense, None, color=False)
    assert f"(max of {len(dense.windows)} windows' logits)" in shown
    first = dense.windows[0]
    assert f"    1  0-{first.end} [0-{first.scored_end}]  {first.predicted_label} 0." in shown
    assert f"... {len(dense.windows) - 10} more" in shown
    # gradlight attribute: the same flags, and the windows in what it prints
    command = ["attribute", "--server", windows_server.address, "--no-color"]
    assert main([*command, "--long-texts", "truncate", LONG]) == 0
    assert "(truncated)" in capsys.readouterr().out
    assert main([*command, LONG]) == 0
    assert "windows' logits)\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (("--aggregation", "max"), "--aggregation is read only with --long-texts windows"),
        (("--window-stride", "8"), "--window-stride is read only with --long-texts windows"),
        (("--long-texts", "windows", "--window-stride", "-2"), "--window-stride is -2"),
    ],
)
def test_request_flags_that_cannot_work_are_usage_errors(flags, said, tmp_path, capsys):
    source = write_input(tmp_path / "in.jsonl", [json.dumps({"text": SHORT})])
    nowhere = ["--server", "127.0.0.1:1"]  # refused before connecting
    assert main(["attribute", *nowhere, *flags, SHORT]) == 2
    assert said in capsys.readouterr().err
    assert main(["explain", str(source), str(tmp_path / "out.jsonl"), *nowhere, *flags]) == 2
    assert said in capsys.readouterr().err


def test_the_cli_offers_the_runtimes_choices():
    assert long_text_flags.AGGREGATIONS == runtime_windows.AGGREGATIONS
    assert (runtime_windows.TRUNCATE, runtime_windows.WINDOWS) == LONG_TEXTS


@pytest.fixture(scope="module")
def long_input(tmp_path_factory):
    """Long lines (7 windows each) around a short line and a short one with a span."""
    lines = [{"id": "long", "text": LONG}, {"id": "short", "text": SHORT}]
    lines.append({"id": "span", "text": SHORT, "spans": [{"start": 3, "end": 8}]})
    lines += [{"id": f"long{n}", "text": _long(n)} for n in range(1, 7)]
    path = tmp_path_factory.mktemp("long") / "in.jsonl"
    return write_input(path, [json.dumps(line, ensure_ascii=False) for line in lines])


@pytest.fixture(scope="module")
def explained(long_input, exported):
    """``long_input`` explained with the artifact and ``--long-texts windows`` in each format
    (gradlight's with ``--sentences``): the outputs by format."""
    outputs = {}
    for name in ("gradlight", "prodigy", "label-studio"):
        outputs[name] = long_input.with_name(f"{name}.jsonl")
        flags = ("--sentences",) if name == "gradlight" else ()
        result = explain(
            long_input, outputs[name], "--artifact", exported("bert"), "--format", name,
            "--long-texts", "windows", *flags,
        )  # fmt: skip
        assert result.returncode == 0 and "explained 9 lines, 0 bad" in result.stdout
    return outputs


def _check_windows(windows: list[dict], text: str) -> None:
    """Windows of ``text`` in order, overlapping, from its start to its end, each scoring the
    part after the one before's."""
    assert len(windows) >= 3
    assert windows[0]["start"] == 0 and windows[-1]["end"] == len(text)
    for before, after in itertools.pairwise(windows):
        assert before["start"] < after["start"] < before["end"] < after["end"]
        assert before["scored_end"] <= after["scored_start"]
    for window in windows:
        assert window["start"] <= window["scored_start"] <= window["scored_end"] <= window["end"]


def _whole_text_words(text: str, spans: list[tuple[int, int]], first_window_end: int) -> None:
    """Evidence spans: words of ``text``, some past the first window."""
    assert spans and max(end for _, end in spans) > first_window_end
    assert set(spans) <= set(words(text))


def test_explain_writes_windows_and_whole_text_offsets_in_every_format(explained):
    records = read_records(explained["gradlight"])
    record = records[0]
    text = record["text"]
    assert record["truncated"] is False and record["aggregation"] == "mean"
    _check_windows(record["windows"], text)
    assert set(record["windows"][0]["probabilities"]) == set(LABELS)
    found = [e for label in LABELS for e in record["evidence"][label]]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in found)
    _whole_text_words(text, [(e["start"], e["end"]) for e in found], record["windows"][0]["end"])
    assert record["sentences"][-1]["end"] == len(text)
    for sentence in record["sentences"]:
        assert text[sentence["start"] : sentence["end"]] == sentence["text"]
    for short in records[1:3]:  # each read in one window: no windows
        assert "windows" not in short and "aggregation" not in short
        assert "windows" not in short.get("entities", [{}])[0]

    [task, *_] = read_records(explained["prodigy"])
    check_prodigy(task, LABELS)
    brief = task["meta"]["windows"]
    assert task["meta"]["aggregation"] == "mean"
    assert [(w["start"], w["end"]) for w in brief] == [
        (w["start"], w["end"]) for w in record["windows"]
    ]
    assert set(brief[0]) == {"start", "end", "scored_start", "scored_end", "label", "p"}
    spans = [(span["start"], span["end"]) for span in task["spans"]]
    _whole_text_words(task["text"], spans, brief[0]["end"])
    assert html_text(task["html"])[1] == [task["text"]]  # the whole text, highlighted

    output = explained["label-studio"]
    config = output.with_name(output.name + ".label-config.xml").read_text()
    [task, *_] = read_records(output)
    check_label_studio(task, config)  # each region's text is the task's text at its offsets
    assert task["meta"] == {"aggregation": "mean", "windows": brief}
    regions = [r["value"] for r in task["predictions"][0]["result"] if r["from_name"] == "evidence"]
    _whole_text_words(text, [(r["start"], r["end"]) for r in regions], brief[0]["end"])


def test_explain_against_the_server_answers_as_the_artifact(explained, long_input, windows_server):
    """The server reads long texts as windows by default: the same records. Its limit of 40
    windows a request is below what the long lines need together: their group is sent again
    line by line, and no line is bad."""
    refused = _refused_attributes(windows_server)
    served = long_input.with_name("served.jsonl")
    result = explain(long_input, served, "--server", windows_server.address, "--sentences")
    assert result.returncode == 0 and "explained 9 lines, 0 bad" in result.stdout
    assert_same_records(read_records(served), read_records(explained["gradlight"]))
    assert _refused_attributes(windows_server) == refused + 1


def _refused_attributes(server) -> float:
    """The Attribute requests ``server`` refused with INVALID_ARGUMENT so far (/metrics)."""
    with urllib.request.urlopen(server.http_url + "metrics", timeout=10) as response:
        metrics = response.read().decode()
    series = 'gradlight_requests_total{code="INVALID_ARGUMENT",method="Attribute",model="bert"}'
    found = re.search(re.escape(series) + r" (\S+)", metrics)
    return float(found.group(1)) if found else 0.0


def test_a_line_read_as_windows_costs_its_windows_in_the_row_budget(tmp_path):
    local = ModelFacts("m", tuple(LABELS), False, 64, 256, "x", long_texts="truncate")
    windows = RequestOptions(long_texts="windows")
    assert line_cost(RequestOptions(), local).window == 0  # truncated: a row a text
    cost = line_cost(windows, local)
    estimated = cost(Item(1, LONG))
    assert 5 <= estimated <= 12  # 7 windows, estimated from its bytes (erring toward more)
    assert cost(Item(1, SHORT)) == 1
    assert cost(Item(1, LONG, spans=(Span(0, 4),) * 2)) == 2  # each span read in one window
    server = ModelFacts("m", tuple(LABELS), False, 64, 64, "x")  # its default is not known
    assert line_cost(RequestOptions(), server)(Item(1, LONG)) == estimated
    sentences = line_cost(RequestOptions(long_texts="windows", sentences=True), local)
    assert sentences(Item(1, LONG)) > estimated  # each sentence's variant, read as windows
    # Lines go in groups of ROWS_PER_REQUEST rows at most.
    source = write_input(tmp_path / "in.jsonl", [json.dumps({"text": LONG * 4})] * 200)
    with source.open("rb") as handle:
        chunks = list(_chunks(handle, 0, 0, 32, *unit_limits(windows, local), cost))
    assert sum(len(chunk.items) for chunk in chunks) == 200
    for chunk in chunks:
        assert sum(cost(item) for item in chunk.items) <= ROWS_PER_REQUEST
        assert len(chunk.items) < 32  # fewer lines than a request of short ones holds
