"""Errors of the export stage; each message says what is wrong and what is supported."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlight.wire.errors import GradlightError

if TYPE_CHECKING:
    from gradlight.export.validation import ValidationReport


class ExportError(GradlightError):
    """The model directory or the output directory cannot be used for an export."""


class ValidationFailedError(GradlightError):
    """An exported graph disagrees with eager PyTorch beyond the stated tolerance."""

    def __init__(self, report: ValidationReport) -> None:
        failed = [check for check in report.checks if not check.passed]
        lines = [
            f"validation failed: {len(failed)} of {len(report.checks)} checks exceed tolerance"
            + (f", {len(report.problems)} problems" if report.problems else "")
        ]
        lines += [f"  {check.describe()}" for check in failed]
        lines += [f"  PROBLEM: {problem}" for problem in report.problems]
        super().__init__("\n".join(lines))
        self.report = report
