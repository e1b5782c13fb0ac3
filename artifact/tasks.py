"""A directory of task artifacts: a multi-task model (a cnlp_transformers checkpoint) exported
as one artifact per classification task, listed in ``tasks.json``; served as ``MODEL/TASK``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

TASKS_FILE = "tasks.json"


@dataclass(frozen=True)
class TaskList:
    """``tasks``: task name -> its artifact's directory (relative); ``refused``: the tasks that
    were not exported, with why."""

    tasks: dict[str, str]
    refused: dict[str, str] = field(default_factory=dict)


def write_tasks(directory: Path, tasks: TaskList) -> None:
    data = {"tasks": tasks.tasks, "refused": tasks.refused}
    (directory / TASKS_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_tasks(directory: Path) -> TaskList | None:
    """The directory's task list, or None when it is a plain artifact."""
    path = Path(directory) / TASKS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return TaskList(dict(data["tasks"]), dict(data.get("refused", {})))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable task list: {exc!r}") from None


def served_artifacts(name: str, directory: Path) -> dict[str, Path]:
    """What serving ``directory`` under ``name`` serves: the artifact itself, or each task's
    artifact as ``name/TASK``."""
    tasks = read_tasks(directory)
    if tasks is None:
        return {name: Path(directory)}
    return {f"{name}/{task}": Path(directory) / sub for task, sub in tasks.tasks.items()}
