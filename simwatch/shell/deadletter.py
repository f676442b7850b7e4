"""The dead-letter file: rejected input appended as NDJSON, one object per rejection.

Each line is ``{"rejected_at": RFC 3339, "source": str, "reason": str, "detail": str,
"record_id": str|null, "iccid": str|null, "raw": str}``. The file is opened lazily (no
file appears when nothing is rejected), its parent directories are created, and it is
flushed every ``flush_every`` writes and on :meth:`DeadLetterFile.flush`, so a crash
loses at most that many lines.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Self

import orjson

from simwatch.core.timeutil import format_rfc3339

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    from simwatch.core.records import Rejection

__all__ = ["DeadLetterFile"]


def _clean(text: str | None) -> str | None:
    """Lone surrogates cannot be written as UTF-8 JSON: replace them."""
    if text is None:
        return None
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class DeadLetterFile:
    """Appends rejected input as NDJSON. With ``path=None`` nothing is written."""

    __slots__ = ("_file", "_flush_every", "_path", "_pending")

    def __init__(self, path: Path | None, *, flush_every: int = 64) -> None:
        self._path = path
        self._file: IO[bytes] | None = None
        self._flush_every = max(1, flush_every)
        self._pending = 0

    @property
    def path(self) -> Path | None:
        return self._path

    def write(self, rejection: Rejection, *, source: str, at: float) -> None:
        """Append one rejection, stamped ``rejected_at=at`` (epoch seconds)."""
        if self._path is None:
            return
        entry = {
            "rejected_at": format_rfc3339(at),
            "source": source,
            "reason": str(rejection.reason),
            "detail": rejection.detail,
            "record_id": rejection.record_id,
            "iccid": rejection.iccid,
            "raw": rejection.raw,
        }
        try:
            line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:
            line = orjson.dumps(
                {key: _clean(value) for key, value in entry.items()},
                option=orjson.OPT_APPEND_NEWLINE,
            )
        file = self._file
        if file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            file = self._file = self._path.open("ab")
        file.write(line)
        self._pending += 1
        if self._pending >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Push buffered lines to the operating system."""
        if self._file is not None:
            self._file.flush()
        self._pending = 0

    def close(self) -> None:
        """Flush and close. A later write opens the file again (appending)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._pending = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
