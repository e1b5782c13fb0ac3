"""The files beside a ``--format label-studio`` output ``OUT.jsonl`` that Label Studio takes as
they are: ``OUT.jsonl.label-config.xml``, the labeling config to create the project with, and
``OUT.jsonl.tasks.json``, the tasks as one JSON list (what Label Studio's import, in its web page
or at ``POST /api/projects/ID/import``, reads), written when the job has finished."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gradlight.runtime.serving.label_studio_tasks import labeling_config

CONFIG_SUFFIX = ".label-config.xml"
TASKS_SUFFIX = ".tasks.json"


def config_path(output: Path) -> Path:
    return output.with_name(output.name + CONFIG_SUFFIX)


def tasks_path(output: Path) -> Path:
    return output.with_name(output.name + TASKS_SUFFIX)


def write_config(output: Path, labels: Sequence[str], multi_label: bool) -> Path:
    path = config_path(output)
    path.write_text(labeling_config(labels, multi_label), encoding="utf-8")
    return path


def write_tasks(output: Path) -> Path:
    """``OUT.jsonl.tasks.json``: the output's records as a JSON list, streamed line by line
    (never the whole output in memory), written beside and renamed into place."""
    path = tasks_path(output)
    partial = path.with_name(path.name + ".partial")
    with output.open("rb") as records, partial.open("wb") as out:
        out.write(b"[")
        first = True
        for line in records:
            line = line.strip()
            if not line:
                continue
            out.write(b"\n" if first else b",\n")
            out.write(line)
            first = False
        out.write(b"\n]\n")
    os.replace(partial, path)
    return path
