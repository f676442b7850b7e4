"""The error of a pushed body that cannot be decoded as a whole (answered 400)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simwatch.core.records import RejectReason

__all__ = ["BodyError", "SignatureError"]


class BodyError(ValueError):
    """A body that cannot be decoded: ``reason`` (a RejectReason) and ``detail``."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[BodyError], tuple[RejectReason, str]]:
        """Picklable (raised in a decode worker process)."""
        return (BodyError, (self.reason, self.detail))


class SignatureError(Exception):
    """A push whose signature does not check (Cisco ``signature2``): answered 401."""
