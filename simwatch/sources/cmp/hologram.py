"""The Hologram adapter (PLATFORMS.md section 6): one usage record per data session.

``GET /api/1/usage/data?limit=&startafter=`` -> ``{success, continues, lastid, links
{next}, data: [{linkid, record_id, session_begin, timestamp, bytes,
radio_access_technology, network_name, …}]}``, newest first. Cursor paging: while
``continues`` is true, ask again with ``startafter=<lastid>`` (older records). The poller
remembers the newest ``record_id`` handed over and stops paging once it reaches it.

Mapping: ``usage`` over ``[session_begin, timestamp]`` (zone-less dates read as UTC,
UNCONFIRMED), ``bytes`` (not split by direction) as ``bytes_down``, ``rat`` from
``radio_access_technology``, ``record_id`` ``hologram:u:<record_id>``.

ICCID: the session records of the documented example carry none (only ``linkid``); the
other published parameter set documents a ``sim`` field, which is used. A record
without an 18-22 digit ``sim`` cannot be attributed to a SIM: it is skipped and counted.

Partner: Hologram gives no MCC/MNC, only ``network_name``. :class:`NetworkNames` is the
operator table read backwards: a name matching exactly (else case-insensitively) one
operator gives its MCC and MNC (so ``partner``); a name shared by several networks of
one MCC gives the MCC only (the country); anything else leaves both out (unknown).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simwatch.sources.cmp.base import AdapterError, Record, normalize_time, obj, put, text

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["NetworkNames", "hologram_page"]

_ICCID_DIGITS = range(18, 23)


class NetworkNames:
    """Operator name -> (MCC, MNC or None), exact first, then case-insensitive."""

    def __init__(self, operators: Iterable[tuple[str, str, str]]) -> None:
        exact: dict[str, set[tuple[str, str]]] = {}
        folded: dict[str, set[tuple[str, str]]] = {}
        for mcc, mnc, name in operators:
            exact.setdefault(name, set()).add((mcc, mnc))
            folded.setdefault(name.casefold(), set()).add((mcc, mnc))
        self._exact = exact
        self._folded = folded

    def lookup(self, name: str) -> tuple[str | None, str | None]:
        codes = self._exact.get(name) or self._folded.get(name.strip().casefold())
        if not codes:
            return None, None
        if len(codes) == 1:
            return next(iter(codes))
        mccs = {mcc for mcc, _ in codes}
        return (mccs.pop(), None) if len(mccs) == 1 else (None, None)


def hologram_page(
    body: object, names: NetworkNames, last: int | None
) -> tuple[list[Record], list[int], bool, int | None, int]:
    """A usage/data page -> records newer than ``last``, their ids, whether ``last`` was
    reached, the ``startafter`` cursor of the next page (None: no more) and items skipped.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise AdapterError("expected {'data': [...], 'continues': ..., 'lastid': ...}")
    out: list[Record] = []
    ids: list[int] = []
    reached = False
    skipped = 0
    for raw in body["data"]:
        item = obj(raw)
        rid = item.get("record_id")
        if not isinstance(rid, int) or isinstance(rid, bool):
            skipped += 1
            continue
        if last is not None and rid <= last:
            reached = True
            continue
        ids.append(rid)
        rec = _record(item, rid, names)
        if rec is None:
            skipped += 1
        else:
            out.append(rec)
    lastid = body.get("lastid")
    more = body.get("continues") is True and isinstance(lastid, int) and not reached
    return out, ids, reached, lastid if more and isinstance(lastid, int) else None, skipped


def _record(item: dict[str, object] | object, rid: int, names: NetworkNames) -> Record | None:
    item = obj(item)
    iccid = text(item.get("sim"))
    start = normalize_time(item.get("session_begin"))
    end = normalize_time(item.get("timestamp"))
    volume = item.get("bytes")
    if (
        iccid is None
        or not iccid.isdigit()
        or len(iccid) not in _ICCID_DIGITS
        or end is None
        or not isinstance(volume, int)
        or isinstance(volume, bool)
        or volume < 0
    ):
        return None
    rec: Record = {
        "kind": "usage",
        "record_id": f"hologram:u:{rid}",
        "iccid": iccid,
        "start": start if start is not None and start <= end else end,
        "end": end,
        "bytes_up": 0,
        "bytes_down": volume,
    }
    name = text(item.get("network_name"))
    if name is not None:
        mcc, mnc = names.lookup(name)
        put(rec, "mcc", mcc)
        put(rec, "mnc", mnc)
    put(rec, "rat", text(item.get("radio_access_technology")))
    return rec
