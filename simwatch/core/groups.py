"""Per-group figures, the one aggregation behind /metrics, InfluxDB and the API.

A group is one value of one dimension (``partner=20801``); its figures are summed over
the leaves that carry the value. Values beyond the ``top_n`` largest are summed into
``OTHER`` so that exported label sets stay bounded, and SIMs with no value yet are
counted under ``UNKNOWN``.
"""

from __future__ import annotations

from typing import Final

DEFAULT_TOP_N: Final = 200  # dimension values exported per dimension; the rest is "_other"
OTHER: Final = "_other"  # label value of the values beyond the top N, summed
UNKNOWN: Final = "_unknown"  # label value of SIMs without a value for the dimension yet
