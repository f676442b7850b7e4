"""Fixtures shared by the test modules.

- ``engine``: a fresh engine without warm-up whose inventory is the test fleet
  (``fleet.ICCIDS``, each an active SIM of customer acme on APN meters.acme).
- ``broker``: a real Mosquitto on a free loopback port (``tests/mosquitto.py``), stopped
  by PID after the test; the test is skipped when mosquitto is not installed.

Shared constants and helpers are plain modules, imported by name: ``fleet`` (``T0``,
``DAY``, ``ICCIDS``, ``new_engine``, ``Feed``, ``inventory_row``), ``servers`` (``until``,
the one polling helper, and the real servers), ``mosquitto`` and ``fuzzing``.

Markers (pyproject.toml): ``slow`` for long scenarios, ``real_server`` for tests that
start real servers or ``simwatch`` processes. Both run by default; deselect with
``-m "not real_server"`` for a quick round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from fleet import ICCIDS, new_engine
from mosquitto import Mosquitto, available

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from simwatch.core.engine import Engine


@pytest.fixture
def engine() -> Engine:
    """A fresh engine (no warm-up) with the test fleet ``ICCIDS`` as its inventory."""
    return new_engine(ICCIDS)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running Mosquitto in ``tmp_path / "broker"``: persistence on, anonymous access."""
    if not available():
        pytest.skip("mosquitto is not installed")
    server = Mosquitto(tmp_path / "broker")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Test files with ``slow`` tests first, each file's tests in their order: under
    ``scripts/test``'s two workers (``--dist loadfile``) the scenario module, minutes of
    simulated fleets, starts at once and overlaps the rest instead of ending the run
    alone."""
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)
