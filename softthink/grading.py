"""Grading: one entry point, `grade(dataset, item, completion) -> Grade` (issue 3 fills this in)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Grade:
    """Verdict for one completion. `correct` is None when the sample could not be graded (e.g. no tests)."""

    correct: bool | None
    extracted: str | None = None
    status: str = "graded"  # passed | failed | no_answer | no_code | timeout | runtime_error | sandbox_error | ungraded | ...
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "extracted": self.extracted, "status": self.status, "detail": self.detail}
