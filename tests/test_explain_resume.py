"""``gradlight explain`` stopped and run again: it resumes from its checkpoint without redoing
or duplicating a line, refuses to resume with other settings or an edited input, explains lines
added to a finished input, and a job spread over replicas loses nothing when one leaves.
Output formats and options: tests/test_explain_output.py."""

from __future__ import annotations

import json
import signal

import pytest
from bulk_formats import assert_same_records
from explain_runs import big_input, explain, read_checkpoint, read_records, start_explain

# Enough lines that a run is still going well after it is stopped (at its first checkpoint, or
# after 500 lines for the replicas) and after a replica has left: 3,000 take ~10 s here.
LINES = 3_000


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, exported):
    """LINES lines and their records from one run that was not stopped."""
    directory = tmp_path_factory.mktemp("uninterrupted")
    source = big_input(directory / "in.jsonl", LINES)
    reference = directory / "reference.jsonl"
    explain(source, reference, "--artifact", exported("bert"), "--lines-per-request", "4")
    return source, read_records(reference)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_resumes_after_being_stopped_without_redoing_or_duplicating(
    tmp_path, exported, uninterrupted, how
):
    source, reference = uninterrupted
    artifact = exported("bert")
    out = tmp_path / "out.jsonl"
    checkpoint_file = tmp_path / "out.jsonl.checkpoint.json"
    process = start_explain(source, out, "--artifact", artifact, lines=1)
    process.send_signal(how)
    _, stderr = process.communicate(timeout=60)
    if how == signal.SIGTERM:
        assert process.returncode == 130 and "run the same command again" in stderr
    else:
        assert process.returncode == -signal.SIGKILL
    stopped_at = read_checkpoint(checkpoint_file)
    assert not stopped_at["complete"] and 0 < stopped_at["lines"] < LINES
    assert out.stat().st_size >= stopped_at["output_bytes"]  # may hold lines past it
    resumed = explain(source, out, "--artifact", artifact, "--lines-per-request", "4")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after line {stopped_at['lines']}" in resumed.stdout
    records = read_records(out)
    assert [r["line"] for r in records] == list(range(1, LINES + 1))  # nothing lost, nothing twice
    assert_same_records(records, reference)
    finished = out.read_bytes()
    again = explain(source, out, "--artifact", artifact)
    assert "already complete" in again.stdout and out.read_bytes() == finished


def test_resume_refuses_other_settings_or_another_input(tmp_path, exported):
    source = big_input(tmp_path / "in.jsonl", 20)
    out = tmp_path / "out.jsonl"
    artifact = exported("bert")
    explain(source, out, "--artifact", artifact)
    changed = explain(source, out, "--artifact", artifact, "--top-k", "2", check=False)
    assert changed.returncode == 2 and "other settings (output differ)" in changed.stderr
    checkpoint_file = tmp_path / "out.jsonl.checkpoint.json"
    data = json.loads(checkpoint_file.read_text())
    data["progress"]["complete"] = False  # as if stopped; then the input is edited
    checkpoint_file.write_text(json.dumps(data))
    source.write_text(source.read_text().replace("Visit 3.", "Visit 4."))
    edited = explain(source, out, "--artifact", artifact, check=False)
    assert edited.returncode == 2 and "differ from the input" in edited.stderr
    fresh = tmp_path / "other.jsonl"
    fresh.write_text("something\n")
    refused = explain(source, fresh, "--artifact", artifact, check=False)
    assert refused.returncode == 2 and "--restart" in refused.stderr
    assert fresh.read_text() == "something\n"  # not overwritten


def test_lines_added_to_a_finished_input_are_explained_on_the_next_run(tmp_path, exported):
    source = big_input(tmp_path / "in.jsonl", 30)
    out = tmp_path / "out.jsonl"
    explain(source, out, "--artifact", exported("bert"))
    with source.open("a") as handle:
        handle.write(json.dumps({"id": "new", "text": "Added later."}) + "\n")
    result = explain(source, out, "--artifact", exported("bert"))
    assert "explained 31 lines" in result.stdout and "resumed after line 30" in result.stdout
    records = read_records(out)
    assert [r["line"] for r in records] == list(range(1, 32)) and records[-1]["id"] == "new"


def test_replicas_behind_round_robin_share_the_job_and_one_can_leave(tmp_path, exported):
    """``--server`` with a name for several replicas (gRPC's ``ipv4:`` list here; DNS with
    several records in production) spreads the requests over them; one replica stopping
    (SIGTERM: it drains) mid-job loses nothing."""
    from processes import serve_process

    source = big_input(tmp_path / "in.jsonl", LINES)
    artifact = str(exported("bert"))
    first = serve_process(artifact, "--name", "bert", verbose=True)
    second = serve_process(artifact, "--name", "bert", verbose=True)
    try:
        target = f"ipv4:{first.address},{second.address}"
        out = tmp_path / "out.jsonl"
        process = start_explain(source, out, "--server", target, lines=500)
        assert first.terminate() == 0  # graceful: its in-flight requests are answered
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        assert f"explained {LINES} lines, 0 bad" in stdout
        assert [r["line"] for r in read_records(out)] == list(range(1, LINES + 1))
        served = [
            log.count("Attribute model='bert'") for log in (first.text_log(), second.text_log())
        ]
        assert all(count > 50 for count in served), served
    finally:
        if first.process.poll() is None:
            first.terminate()
        second.terminate()


def test_a_gradient_shap_job_keeps_the_seed_it_picked_when_resumed(tmp_path, exported):
    """Without --seed the job picks one, records it, and sends it with every request: a resumed
    job keeps it (the same text gets the same answer); another seed or other samples are
    refused."""
    source = big_input(tmp_path / "in.jsonl", 6)
    out = tmp_path / "out.jsonl"
    artifact = exported("bert")
    shap = ("--artifact", artifact, "--method", "gradient_shap")
    explain(source, out, *shap, "--samples", "4", "--lines-per-request", "2")
    records = read_records(out)
    (seed,) = {record["seed"] for record in records}
    assert all(record["method"] == "gradient_shap" for record in records)
    checkpoint_file = tmp_path / "out.jsonl.checkpoint.json"
    recorded = json.loads(checkpoint_file.read_text())["settings"]["request"]
    assert (recorded["seed"], recorded["method"], recorded["samples"]) == (seed, "gradient_shap", 4)
    with source.open("a") as handle:  # the first line's text again, as a new line
        handle.write(json.dumps({"id": "again", "text": records[0]["text"]}) + "\n")
    resumed = explain(source, out, *shap, "--samples", "4")
    assert "resumed after line 6" in resumed.stdout and f"(seed {seed})" in resumed.stdout
    records = read_records(out)
    assert [record["seed"] for record in records] == [seed] * 7
    assert_same_records([{**records[-1], "line": 1, "id": 0}], [records[0]])
    for other in (("--samples", "8"), ("--samples", "4", "--seed", str(seed + 1))):
        refused = explain(source, out, *shap, *other, check=False)
        assert refused.returncode == 2 and "(request differ)" in refused.stderr
    again = explain(source, out, *shap, "--samples", "4", "--seed", str(seed))
    assert "already complete" in again.stdout
