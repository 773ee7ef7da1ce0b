"""Counters a connection's owner keeps across reconnects: each new connection adds to the same object."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class PumpStats:
    requests: int = 0        # requests sent
    late_replies: int = 0    # replies that came after their caller gave up (dropped)
    timeouts: int = 0        # requests failed by their deadline
    connects: int = 0        # connections opened (the first one included)

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconnects": self.reconnects}
