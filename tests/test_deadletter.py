from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from simwatch.core.records import RecordDecoder, Rejection, RejectReason
from simwatch.core.timeutil import parse_rfc3339
from simwatch.shell.deadletter import DeadLetterFile

if TYPE_CHECKING:
    from pathlib import Path

AT = parse_rfc3339("2026-11-20T10:15:00Z")


def _read(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_round_trip_of_decoder_rejections(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "rejected.ndjson"
    decoder = RecordDecoder()
    bad_line = (
        b'{"kind":"usage","record_id":"u-7","iccid":"8931440000000000011",'
        b'"start":"2026-11-20T10:00:00Z","end":"2026-11-20T10:15:00Z",'
        b'"bytes_up":-1,"bytes_down":0}\n'
    )
    first = decoder.decode_line(bad_line, AT)
    second = decoder.decode_line(b"not json \xff\n", AT)
    assert isinstance(first, Rejection)
    assert isinstance(second, Rejection)
    with DeadLetterFile(path) as dead:
        dead.write(first, source="file:records.ndjson", at=AT)
        dead.write(second, source="mqtt:fleet/records", at=AT + 1.4)
    assert _read(path) == [
        {
            "rejected_at": "2026-11-20T10:15:00Z",
            "source": "file:records.ndjson",
            "reason": "negative_bytes",
            "detail": first.detail,
            "record_id": "u-7",
            "iccid": "8931440000000000011",
            "raw": bad_line.decode().rstrip("\n"),
        },
        {
            "rejected_at": "2026-11-20T10:15:01Z",
            "source": "mqtt:fleet/records",
            "reason": "invalid_json",
            "detail": second.detail,
            "record_id": None,
            "iccid": None,
            "raw": "not json \ufffd",
        },
    ]
    # The raw text can be fed back to the decoder to get the same verdict.
    again = decoder.decode_line(str(_read(path)[0]["raw"]), AT)
    assert isinstance(again, Rejection)
    assert again.reason is RejectReason.NEGATIVE_BYTES


def test_no_file_when_nothing_rejected(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "rejected.ndjson"
    with DeadLetterFile(path) as dead:
        dead.flush()
    assert not path.exists()
    assert not path.parent.exists()


def test_none_path_writes_nothing(tmp_path: Path) -> None:
    dead = DeadLetterFile(None)
    dead.write(Rejection(RejectReason.BAD_VALUE, "x", "y"), source="s", at=AT)
    dead.flush()
    dead.close()
    assert list(tmp_path.iterdir()) == []


def test_flushes_every_n_writes_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "rejected.ndjson"
    path.write_bytes(b'{"old":1}\n')
    dead = DeadLetterFile(path, flush_every=3)
    rejection = Rejection(RejectReason.BAD_ICCID, "field 'iccid': bad", "{}")
    dead.write(rejection, source="s", at=AT)
    dead.write(rejection, source="s", at=AT)
    assert len(path.read_bytes().splitlines()) == 1  # still buffered
    dead.write(rejection, source="s", at=AT)
    assert len(path.read_bytes().splitlines()) == 4  # flushed after the third
    dead.write(rejection, source="s", at=AT)
    dead.flush()
    assert len(path.read_bytes().splitlines()) == 5
    dead.close()
    dead.write(rejection, source="s", at=AT)  # reopens, appending
    dead.close()
    lines = _read(path)
    assert len(lines) == 6
    assert lines[0] == {"old": 1}


def test_unencodable_text_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "rejected.ndjson"
    with DeadLetterFile(path) as dead:
        dead.write(
            Rejection(RejectReason.INVALID_JSON, "bad \ud800", "raw \udcff"), source="s", at=AT
        )
    (entry,) = _read(path)
    assert entry["raw"] == "raw \ufffd"
    assert entry["detail"] == "bad \ufffd"
