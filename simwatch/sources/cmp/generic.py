"""The generic CMP adapter: the platform serves FORMATS.md records itself::

  GET {base}/records?since=<cursor>&limit=<n>
  -> {"records": [<FORMATS.md record>, ...], "next": "<cursor>" | null}

``next`` is the opaque cursor to pass as ``since`` for the records after this page;
``null`` means the server has no cursor to give (the poller keeps its own). A page
shorter than ``limit`` is the last one. Records pass through unchanged.
"""

from __future__ import annotations

from simwatch.sources.cmp.base import AdapterError, Record

__all__ = ["generic_page"]


def generic_page(body: object) -> tuple[list[Record], str | None, int]:
    """``{"records": [...], "next": cursor|null}`` -> (records, next cursor, non-objects)."""
    if not isinstance(body, dict):
        raise AdapterError("expected an object with 'records' and 'next'")
    records = body.get("records")
    nxt = body.get("next")
    if not isinstance(records, list):
        raise AdapterError("field 'records' is not a list")
    if nxt is not None and not isinstance(nxt, str | int):
        raise AdapterError("field 'next' is not a string or null")
    out: list[Record] = [r for r in records if isinstance(r, dict)]
    return out, (str(nxt) if nxt is not None else None), len(records) - len(out)
