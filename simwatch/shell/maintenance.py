"""The maintenance windows' store: the config file's windows (read-only) and the API's,
kept in ``<state_dir>/maintenance.json`` (written atomically: a restart keeps them).

The engine gets the whole list on every change (``on_change``); it marks the incidents
in a window's scope from the next evaluation on (``simwatch.core.engine``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final

import orjson

from simwatch.core.maintenance import MaintenanceError, Window, window_from_json
from simwatch.shell.files import write_atomically

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME: Final = "maintenance.json"
MAX_WINDOWS: Final = 1000  # windows the API keeps at most (a POST beyond is refused)


class MaintenanceStore:
    """Config windows plus API windows; ``path`` None keeps the API's in memory only."""

    def __init__(
        self,
        config: Sequence[Window],
        path: Path | None,
        *,
        on_change: Callable[[tuple[Window, ...]], None] = lambda _w: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.on_change = on_change
        self.clock = clock
        self._config = tuple(config)
        self._api: list[Window] = []
        self._next_id = 1
        self._lock = asyncio.Lock()

    def windows(self) -> tuple[Window, ...]:
        """Every window: the config's first, then the API's oldest first."""
        return (*self._config, *self._api)

    def get(self, window_id: str) -> Window | None:
        return next((w for w in self.windows() if w.id == window_id), None)

    def load(self) -> None:
        """Read the API's windows back (blocking; at start). A file that cannot be read
        raises ``ValueError`` naming it; a window in it that no longer validates (a time
        zone gone from the system) is logged and skipped."""
        if self.path is None or not self.path.exists():
            self._changed()
            return
        try:
            data = orjson.loads(self.path.read_bytes())
            next_id = int(data["next_id"])
            items = list(data["windows"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.path}: cannot read the maintenance windows: {exc}") from exc
        taken = {w.id for w in self._config}
        windows = []
        for item in items:
            try:
                created = item.get("created_at") if isinstance(item, dict) else None
                spec = {k: v for k, v in item.items() if k != "created_at"}
                window = window_from_json(
                    spec,
                    source="api",
                    created_at=float(created) if isinstance(created, int | float) else None,
                )
            except (MaintenanceError, AttributeError) as exc:
                log.warning("%s: a maintenance window is skipped: %s", self.path, exc)
                continue
            if window.id in taken:
                log.warning("%s: window %s skipped: a config id", self.path, window.id)
                continue
            windows.append(window)
        self._api = windows
        self._next_id = max(next_id, 1)
        self._changed()

    def _changed(self) -> None:
        self.on_change(self.windows())

    def _snapshot(self) -> bytes:
        return orjson.dumps(
            {"next_id": self._next_id, "windows": [w.spec() for w in self._api]},
            option=orjson.OPT_INDENT_2,
        )

    def _write(self, data: bytes) -> None:
        if self.path is not None:
            write_atomically(self.path, data)

    def _prepare_add(self, data: Mapping[str, object]) -> Window:
        if "id" in data:
            raise MaintenanceError("id", "given by the server; leave it out")
        if len(self._api) >= MAX_WINDOWS:
            raise MaintenanceError("(body)", f"at most {MAX_WINDOWS} windows; delete old ones")
        window = window_from_json(
            data, source="api", window_id=f"mw-{self._next_id:04d}", created_at=self.clock()
        )
        self._next_id += 1
        return window

    def add(self, data: Mapping[str, object]) -> Window:
        """Validate, keep and persist a window (blocking); ``MaintenanceError`` naming the
        field when it is not one."""
        window = self._prepare_add(data)
        self._api.append(window)
        try:
            self._write(self._snapshot())
        except OSError:
            self._api.remove(window)
            raise
        self._changed()
        return window

    def _prepare_delete(self, window_id: str) -> None:
        if any(w.id == window_id for w in self._config):
            raise PermissionError(f"window {window_id} is defined in the config file")
        kept = [w for w in self._api if w.id != window_id]
        if len(kept) == len(self._api):
            raise KeyError(window_id)
        self._api = kept

    def delete(self, window_id: str) -> None:
        """Remove an API window (blocking): ``KeyError`` when unknown, ``PermissionError``
        for a config window."""
        before = list(self._api)
        self._prepare_delete(window_id)
        try:
            self._write(self._snapshot())
        except OSError:
            self._api = before
            raise
        self._changed()

    async def add_async(self, data: Mapping[str, object]) -> Window:
        """``add`` on the event loop: validated here, written in a worker thread."""
        async with self._lock:
            window = self._prepare_add(data)
            self._api.append(window)
            try:
                await asyncio.to_thread(self._write, self._snapshot())
            except OSError:
                self._api.remove(window)
                raise
            self._changed()
            return window

    async def delete_async(self, window_id: str) -> None:
        async with self._lock:
            before = list(self._api)
            self._prepare_delete(window_id)
            try:
                await asyncio.to_thread(self._write, self._snapshot())
            except OSError:
                self._api = before
                raise
            self._changed()
