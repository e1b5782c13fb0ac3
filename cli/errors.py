"""The command line's own error: a flag or argument that cannot be used as given."""

from __future__ import annotations

from gradlight.wire.errors import GradlightError


class UsageError(GradlightError):
    """A flag's value (or a combination of flags) that cannot work; the message names the
    flag and says what to give instead. ``gradlight`` reports it on one line and exits 2."""
