"""What both checkers share: the report they fill and how mmaction2 samples frames (which the config
check reads from a config and the rawframe check uses). Its own module so that dataset.py can call config.py
without the two importing each other."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from avaforge.formats.errors import Problem, Severity


@dataclass
class ValidationReport:
    dataset: str
    problems: list[Problem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> Counter[str]:
        return Counter(p.code for p in self.problems)

    def add(self, severity: Severity, code: str, message: str, where: str) -> None:
        self.problems.append(Problem(severity, code, message, where))

    def to_json(self) -> str:
        return json.dumps(
            {
                "dataset": self.dataset,
                "ok": self.ok,
                "errors": len(self.errors),
                "warnings": len(self.warnings),
                "summary": self.summary,
                "problems": [p.as_dict() for p in self.problems],
            },
            indent=2,
        )

    def to_text(self) -> str:
        lines = [str(p) for p in self.problems]
        for split, info in self.summary.get("splits", {}).items():
            lines.append(
                f"{split}: {info['rows']} rows, {info['boxes']} boxes, {info['keyframes']} keyframes, "
                f"{info['videos']} videos"
            )
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"{verdict}: {len(self.errors)} errors, {len(self.warnings)} warnings in {self.dataset}")
        return "\n".join(lines)


@dataclass(frozen=True)
class WindowSettings:
    """How mmaction2 will sample frames; defaults are the SlowFast/SlowOnly AVA configs'."""

    clip_len: int = 32
    frame_interval: int = 2
    start_index: int = 1
    timestamp_start: int = 0
    shot_frames: int | None = None  # (timestamp_end - timestamp_start) * fps, None = no upper clamp
