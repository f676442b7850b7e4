# Stub of the optional C extension (simwatch/core/_cdecode.c; see its header comment).

from collections.abc import Sequence

import numpy as np

def decode_lines(
    lines: Sequence[bytes | str],
    max_line_bytes: int,
    time_limit: float,
    kind: np.ndarray,
    ts: np.ndarray,
    start: np.ndarray,
    bytes_up: np.ndarray,
    bytes_down: np.ndarray,
    /,
) -> tuple[
    list[int],  # fallback: the indices of the lines left to the Python path
    list[str],  # record_id
    list[str],  # iccid
    list[str | None],  # apn
    list[str | None],  # mcc
    list[str | None],  # mnc
    list[str | None],  # rat
    list[str | None],  # session_id
    list[str | None],  # status
    list[str | None],  # end_cause
    list[str | None],  # event_type
    list[str | None],  # cause
    list[str | None],  # operator
]: ...
