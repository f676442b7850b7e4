"""The one retry policy of the shell: capped exponential backoff with equal jitter.

Every retry loop (source restarts, MQTT reconnects, CMP polls, sink deliveries) waits
``backoff_delay(failures, min_s, max_s, rng)`` after ``failures`` consecutive failures:
the ceiling doubles from ``min_s`` with each failure up to ``max_s``, and the wait is
drawn uniformly from the upper half of it, ``[ceiling / 2, ceiling]``. The upper half
keeps a retry from ever hammering a server that just failed (full jitter can draw
zero), and the random half keeps a fleet of clients that lost the same server from
coming back in lock-step.

``Backoff`` holds the failure count for a loop that retries one thing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

_MAX_DOUBLINGS = 63  # 2**63 * any positive min_s is beyond every max_s


def backoff_delay(failures: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """The wait after ``failures`` (>= 1) consecutive failures."""
    ceiling = min(max_s, min_s * 2.0 ** min(max(failures - 1, 0), _MAX_DOUBLINGS))
    return rng.uniform(ceiling / 2.0, ceiling)


@dataclass(slots=True)
class Backoff:
    """The failure count of one retry loop and the wait it implies."""

    min_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random)  # jitter, not cryptography
    failures: int = 0

    def failed(self) -> float:
        """Count a failure; returns how long to wait before the next attempt."""
        self.failures += 1
        return backoff_delay(self.failures, self.min_s, self.max_s, self.rng)

    def succeeded(self) -> None:
        """The next failure starts again from ``min_s``."""
        self.failures = 0
