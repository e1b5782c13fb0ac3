"""``gradlight explain --ray``: the bulk job on a local Ray instance (2 CPUs, started here)
with Ray Data writes what the local run writes, line for line, bad lines included."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from bulk_formats import assert_same_records, html_text
from explain_runs import BAD, GOOD
from processes import gradlight
from ray_cluster import LOOPBACK_ENV, RayHead


@pytest.fixture(scope="module")
def ray_head():
    head = RayHead(cpus=2)
    try:
        head.wait_ready()
        yield head
    finally:
        head.stop()
    assert head.processes() == [], "Ray's processes outlived the head"


def _input(path, lines):
    records = []
    for i in range(lines):
        if i % 97 == 5:
            records.append(list(BAD)[i % len(BAD)])
        else:
            record = dict(GOOD[i % len(GOOD)])
            record["id"] = i
            records.append(json.dumps(record, ensure_ascii=False))
    path.write_text("".join(line + "\n" for line in records), encoding="utf-8")
    return path


def _comparable(line):
    """A record with the parts that print a score (Prodigy's html and colours) reduced to what
    does not move with the last float bits (see assert_same_records)."""
    record = json.loads(line)
    if "html" in record:
        record["html"] = html_text(record["html"])[0]  # the text it shows
        for span in record["spans"]:
            span.pop("color")
    return record


def _run(*args):
    started = time.perf_counter()
    result = subprocess.run(
        [*gradlight("explain", *map(str, args), "--no-progress")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **LOOPBACK_ENV},
    )
    assert result.returncode == 3, result.stderr  # done, with the bad lines reported
    return result, time.perf_counter() - started


def test_ray_run_matches_the_local_run_line_for_line(ray_head, tmp_path, exported):
    source = _input(tmp_path / "in.jsonl", 3000)
    artifact = exported("bert")
    local, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    for output_format in ("gradlight", "prodigy"):
        local_run, local_s = _run(
            source, local, "--artifact", artifact, "--format", output_format, "--sentences",
            "--restart",
        )  # fmt: skip
        ray_run, ray_s = _run(
            source, ray_out, "--artifact", artifact, "--ray", ray_head.address,
            "--format", output_format, "--sentences", "--restart", "--ray-wave-lines", "1000",
        )  # fmt: skip
        print(f"{output_format}: local {local_run.stdout.strip()} ({local_s:.1f} s with start)")
        print(f"{output_format}: ray   {ray_run.stdout.strip()} ({ray_s:.1f} s with start)")
        local_records = [_comparable(line) for line in local.read_text().splitlines()]
        ray_records = [_comparable(line) for line in ray_out.read_text().splitlines()]
        assert len(local_records) == 3000 - len(range(5, 3000, 97))
        assert_same_records(ray_records, local_records)
        errors = tmp_path / "local.jsonl.errors.jsonl"
        assert (tmp_path / "ray.jsonl.errors.jsonl").read_text() == errors.read_text()
