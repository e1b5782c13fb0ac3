"""What the ``gradlight explain`` tests share (tests/test_explain_output.py,
test_explain_resume.py, test_explain_ray.py): good and bad input lines, input files, and the
command run as a real process, in the foreground or in the background until its checkpoint
shows progress."""

from __future__ import annotations

import json
import subprocess
import time

from processes import gradlight

NOTE = "The patient denied any chest pain today. She reported no shortness of breath."
GOOD = [
    {"id": "a", "text": NOTE},
    {"id": 7, "text": "Café résumé — 病院 visit 😀. Fever present since Monday."},
    {"text": "Possible pneumonia; rule out sepsis.\nDr. Smith agrees."},
    {
        "id": "entities",
        "text": NOTE,
        "spans": [
            {"start": NOTE.index("chest pain"), "end": NOTE.index("chest pain") + 10, "label": "P"},
            {"start": NOTE.index("shortness"), "end": len(NOTE) - 1},
        ],
    },
]
BAD = {
    "{not json": "is not valid JSON",
    json.dumps(["a", "list"]): "must be a JSON object",
    json.dumps({"id": "x"}): "text: must be a string, got missing",
    json.dumps({"text": "  \t "}): "text: is empty or whitespace only",
    json.dumps({"text": "ab", "spans": [{"start": 1, "end": 9}]}): "spans[0]: [1, 9) is not",
    json.dumps({"text": "ab", "id": [1]}): "id: must be a string or an integer",
    json.dumps({"text": "ab", "spans": [{"start": "0", "end": 1}]}): "spans[0].start: must be",
    json.dumps({"text": "ab", "spans": [{"start": 0, "end": 1}] * 300}): "has 300 spans; at most",
}


def write_input(path, lines):
    """``lines`` as a JSONL file at ``path``."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def explain(*args, check=True, timeout=300):
    """``gradlight explain ARGS`` run to its end; unless ``check=False``, it must finish (with
    or without bad lines)."""
    result = subprocess.run(
        gradlight("explain", *map(str, args), "--no-progress"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert result.returncode in (0, 3), result.stderr
    return result


def read_records(path):
    """The JSON lines of ``path``."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def big_input(path, lines):
    """``lines`` good lines (the GOOD texts in turn, numbered) as a JSONL file at ``path``."""
    texts = [record["text"] for record in GOOD]
    records = [{"id": i, "text": f"{texts[i % len(texts)]} Visit {i}."} for i in range(lines)]
    return write_input(path, [json.dumps(record, ensure_ascii=False) for record in records])


def read_checkpoint(path):
    """The progress in a checkpoint file, or None while there is none (or it is half written)."""
    try:
        return json.loads(path.read_text())["progress"]
    except (OSError, ValueError):
        return None


def start_explain(source, out, *args, lines):
    """``gradlight explain SOURCE OUT ARGS`` in the background (4 lines per request), once
    its checkpoint counts at least ``lines`` lines done."""
    command = gradlight("explain", source, out, *args, "--no-progress", "--lines-per-request", "4")
    process = subprocess.Popen(
        list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    checkpoint_file = out.with_name(out.name + ".checkpoint.json")
    deadline = time.monotonic() + 120
    while (progress := read_checkpoint(checkpoint_file)) is None or progress["lines"] < lines:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return process
