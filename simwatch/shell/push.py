"""A source that receives pushed bodies: the contract between the HTTP layer and it.

The HTTP app (``simwatch.http.app``) serves ``POST /api/v1/ingest/{name}`` and must not
import ``simwatch.sources`` (the layer contract): it routes a request to the
``PushReceiver`` of that name, which ``simwatch run`` hands it. The receiver decides what
the body is worth: it answers with a ``PushReply`` only once the records are durably
kept (``simwatch.sources.webhook``: journaled and fsynced), so a 2xx is a promise.

Authentication: the app accepts an API bearer token for every receiver, or the
receiver's own HTTP Basic credentials (``basic_matches``), for platforms that can only
send static headers or URL credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, runtime_checkable

from simwatch.core.records import Rejection

__all__ = ["PushReceiver", "PushReply", "RejectionWriter"]


@dataclass(frozen=True, slots=True)
class PushReply:
    """What the HTTP layer answers: a status, a JSON body, an optional Retry-After."""

    status: int
    body: Mapping[str, object] = field(default_factory=dict)
    retry_after_s: int | None = None


# Counts rejections and appends them to the daemon's dead letters (``source`` names the
# receiver); wired by ``simwatch run`` so a rejected push is kept like any other input.
RejectionWriter: TypeAlias = Callable[[Sequence[Rejection], str], Awaitable[None]]


@runtime_checkable
class PushReceiver(Protocol):
    """A source the HTTP layer hands pushed request bodies to."""

    @property
    def name(self) -> str:
        """The configured source name: the ``{name}`` of the ingest path."""
        ...

    @property
    def max_body_bytes(self) -> int:
        """Bodies above this are refused with 413 before they are read."""
        ...

    @property
    def basic_required(self) -> bool:
        """Whether the receiver has Basic credentials (then a request without a bearer
        token must carry them, even with the API's auth off)."""
        ...

    def basic_matches(self, credentials: str) -> bool:
        """Whether a Basic ``credentials`` value (base64 ``user:password``) matches, in
        constant time."""
        ...

    async def receive(self, body: bytes, content_type: str) -> PushReply:
        """Decode, keep durably, and say so (2xx), or why not (4xx/5xx)."""
        ...

    def too_large(self, size: int | None) -> PushReply:
        """Count a body refused as over ``max_body_bytes`` (size None: unknown) and give
        the 413 to answer."""
        ...
