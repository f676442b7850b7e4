"""Hypothesis settings shared by the fuzz tests (import as ``from fuzzing import fuzz``).

Each fuzz test runs a fixed number of examples with no deadline and a fixed seed, so the
suite is bounded and reproducible. ``FUZZ_SCALE=<n>`` multiplies the examples and turns
the fixed seed off (``bench/fuzz_records.py`` runs rounds of that for minutes).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final

from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from collections.abc import Callable

SCALE: Final = max(1, int(os.environ.get("FUZZ_SCALE", "1")))


def fuzz(
    examples: int, *also_suppress: HealthCheck
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Settings of one fuzz test: ``examples`` (times ``FUZZ_SCALE``), no deadline."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, *also_suppress],
    )
