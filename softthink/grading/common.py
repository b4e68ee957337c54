"""What every grader shares: the :class:`Grade` verdict, the grader version and the grading modes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GRADER_VERSION = "2"  # 2: answer forms after </think>, hedges, bases, degree sign; official percent as on 0.8.0
MODES = ("suite", "official")


@dataclass
class Grade:
    """Verdict for one completion. `correct` is None when the sample could not be graded (e.g. no tests)."""

    correct: bool | None
    extracted: str | None = None
    status: str = "graded"  # passed | failed | no_answer | no_code | timeout | runtime_error | sandbox_error | ungraded | ...
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "extracted": self.extracted, "status": self.status, "detail": self.detail}
