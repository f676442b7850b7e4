"""What a platform's polling routine may use of the CMP poller, and the state they share.

``simwatch.sources.cmp.source.CmpSource`` (the poller) implements :class:`PollContext`;
each platform's routine (``<platform>_poll.poll(ctx, sink)``) uses only this interface,
so the platform modules never import the poller. Here too: the poll errors
(:class:`CmpError`, :class:`SimSkipError`), the per-SIM cursor (:class:`SimState`, part
of the persisted cursor), the response-header helpers and the constants several
platforms share.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from simwatch.sources.cmp.cisco import CiscoSessionMark, CiscoUsageMark
from simwatch.sources.cmp.onence import OnceUsageMark

if TYPE_CHECKING:
    import logging
    from collections.abc import Awaitable, Callable, Mapping

    from simwatch.core.operators import OperatorTable
    from simwatch.shell.settings import HttpSourceSettings
    from simwatch.shell.source_contract import Sink
    from simwatch.sources.cmp.base import Record

__all__ = [
    "HOUR_S",
    "LOOKBACK_S",
    "REDISCOVER_S",
    "CmpError",
    "PollContext",
    "SimSkipError",
    "SimState",
    "header",
    "int_header",
]

HOUR_S: Final = 3600
LOOKBACK_S: Final = 3 * HOUR_S  # first poll, and KORE's re-read of hours still growing
REDISCOVER_S: Final = HOUR_S  # Soracom/KORE SIM lists are re-read at most this often

_T = TypeVar("_T")


class CmpError(Exception):
    """A failed poll: the message is what ``stats.last_error`` shows."""


class SimSkipError(CmpError):
    """A per-SIM request refused with a 4xx (unknown ICCID...): skip the SIM this poll."""


@dataclass(slots=True)
class SimState:
    """One SIM's position in the persisted cursor (the fields its platform uses)."""

    usage: OnceUsageMark | None = None  # 1NCE
    last_event_id: int | None = None  # 1NCE
    session: CiscoSessionMark | None = None  # Cisco
    ctd: CiscoUsageMark | None = None  # Cisco
    since: int | None = None  # Soracom: newest session event time (ms)
    marks: dict[str, tuple[int, int]] | None = None  # Soracom/KORE: totals per window

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.usage is not None:
            out["usage"] = [self.usage.date, self.usage.up, self.usage.down]
        if self.last_event_id is not None:
            out["last_event_id"] = self.last_event_id
        if self.session is not None:
            out["session"] = [self.session.started, self.session.ended]
        if self.ctd is not None:
            out["ctd"] = [self.ctd.ctd, self.ctd.at, self.ctd.sessions]
        if self.since is not None:
            out["since"] = self.since
        if self.marks:
            out["marks"] = {k: list(v) for k, v in self.marks.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SimState:
        state = cls()
        usage = data.get("usage")
        if isinstance(usage, list) and len(usage) == 3:
            date, up, down = usage
            if isinstance(date, str) and isinstance(up, int) and isinstance(down, int):
                state.usage = OnceUsageMark(date, up, down)
        last = data.get("last_event_id")
        if isinstance(last, int):
            state.last_event_id = last
        session = data.get("session")
        if isinstance(session, list) and len(session) == 2:
            started, ended = session
            if isinstance(started, str | None) and isinstance(ended, str | None):
                state.session = CiscoSessionMark(started, ended)
        ctd = data.get("ctd")
        if isinstance(ctd, list) and len(ctd) in {2, 3}:
            value, at, sessions = [*ctd, None][:3]
            if isinstance(value, int) and isinstance(at, int | float):
                count = sessions if isinstance(sessions, int) else None
                state.ctd = CiscoUsageMark(value, float(at), count)
        since = data.get("since")
        if isinstance(since, int):
            state.since = since
        marks = data.get("marks")
        if isinstance(marks, dict):
            state.marks = {
                k: (v[0], v[1])
                for k, v in marks.items()
                if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)
            }
        return state


class PollContext(Protocol):
    """The poller as a platform's polling routine sees it.

    The in-flight cursor is ``position`` (an opaque cursor or a time mark), ``last_id``
    (the newest upstream id) and ``sims`` (per-SIM marks); what a routine leaves there is
    persisted by the next ``hand_over(..., commit=True)``.
    """

    settings: HttpSourceSettings
    skipped: int  # upstream items with no FORMATS.md mapping
    position: str | None
    last_id: int | None
    sims: dict[str, SimState]
    log: logging.Logger  # the poller's logger: routines log under the source's name

    def now(self) -> float:
        """The poller's clock."""
        ...

    async def sleep(self, delay: float) -> None:
        """The poller's sleep."""
        ...

    async def get_json(
        self, path: str, params: Mapping[str, str]
    ) -> tuple[object, Mapping[str, str]]:
        """``GET base_url + path``: the parsed JSON and the response headers.

        Rate limited, authenticated and throttle-aware; raises ``CmpError`` (a 4xx other
        than 401/403: ``SimSkipError``).
        """
        ...

    async def hand_over(self, sink: Sink, objects: list[Record], *, commit: bool) -> None:
        """Put a batch (``commit``: with the current in-flight cursor as its ``on_applied``)."""
        ...

    async def per_sim(
        self,
        sink: Sink,
        fetch: Callable[[str, SimState], Awaitable[tuple[list[Record], SimState]]],
        *,
        discover: Callable[[], Awaitable[list[str]]] | None = None,
        workers: int | None = None,
    ) -> None:
        """Each SIM (``iccids``, else what ``discover`` finds) through ``fetch``."""
        ...

    async def operators(self) -> OperatorTable:
        """The packaged operator table, loaded once."""
        ...

    def platform_state(self, kind: type[_T]) -> _T:
        """The routine's own state of type ``kind`` (made on first use, not persisted)."""
        ...


def int_header(headers: Mapping[str, str], name: str) -> int | None:
    """A response header by name (exact, else case-insensitive) as an integer."""
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return int(value.strip())
    return None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A response header by case-insensitive name (empty counts as absent)."""
    lower = name.lower()
    value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value.strip() or None if value is not None else None
