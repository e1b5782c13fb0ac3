"""Reduced-precision copies of an artifact's graphs (``COPIES``), one entry per precision: how the
copies are made from the fp32 graphs, how they are checked against them, and what a failed check
raises. ``gradlight export --fp16`` asks for ``fp16`` (GPU), ``--bf16`` for ``bf16`` (CPUs with
native bf16); the runtime serves a precision's graphs with ``gradlight serve --precision NAME``.

A strict precision fails the export when a graph misses its checks; a lenient one (bf16) only
leaves that graph out, and the engine runs it in fp32."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gradlight.artifact.manifest import GraphInfo
from gradlight.export import bf16, half_precision
from gradlight.export.model_loading import LoadedClassifier


class PrecisionReport(Protocol):
    @property
    def passed(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...

    def format(self) -> str: ...


@dataclass(frozen=True)
class PrecisionSpec:
    """``convert(staging, fp32 graphs) -> graphs``; ``validate(staging, fp32 graphs, graphs,
    loaded) -> report``; ``error(report)``: the exception a failed report raises;
    ``select(report, graphs)``: for a lenient precision, the graphs that passed (None: strict,
    every graph must pass)."""

    name: str
    describe: str
    convert: Callable[[Path, Mapping[str, GraphInfo]], dict[str, GraphInfo]]
    validate: Callable[
        [Path, Mapping[str, GraphInfo], Mapping[str, GraphInfo], LoadedClassifier],
        PrecisionReport,
    ]
    error: Callable[[Any], Exception]
    select: Callable[[Any, Mapping[str, GraphInfo]], dict[str, GraphInfo]] | None = None


COPIES: dict[str, PrecisionSpec] = {
    "fp16": PrecisionSpec(
        "fp16",
        "converting to fp16 and validating against fp32",
        half_precision.convert_graphs,
        half_precision.validate_fp16,
        half_precision.HalfPrecisionError,
    ),
    "bf16": PrecisionSpec(
        "bf16",
        "checking the graphs in bf16 (OpenVINO) against fp32 with the quality gates",
        bf16.bf16_graphs,
        bf16.validate_bf16,
        RuntimeError,
        select=bf16.select_bf16,
    ),
}
