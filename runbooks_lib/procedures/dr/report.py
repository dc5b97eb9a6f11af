"""What a drill reports: a measurement against its target (a leaf both the drill and its scenarios use)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Measurement"]


@dataclass(frozen=True)
class Measurement:
    check: str
    value: float | int | None
    target: float | int | None
    unit: str

    @property
    def passed(self) -> bool | None:
        """None for a measurement without a target (reported, not judged)."""
        if self.target is None:
            return None
        return self.value is not None and self.value <= self.target
