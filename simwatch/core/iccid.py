"""One SIM, one identity: an ICCID with and without its Luhn check digit.

An ICCID is printed on the card as 19 digits plus a Luhn check digit (ITU-T E.118), but
most connectivity platforms (emnify, 1NCE, Cisco, ...) report the 19 digits without it.
An inventory typed from the cards and records from a platform must still meet on one
SIM, so the fleet state treats a 20-digit ICCID whose last digit is the Luhn check digit
of the first 19 and those 19 digits as the same SIM:

- a lookup by either form finds the SIM (``FleetState.row``);
- a record or inventory row in one form joins the SIM first seen in the other form, and
  the SIM keeps the form it was first seen in (what the API and alerts show).

Only this pair is joined: a 20-digit ICCID with a wrong check digit, and ICCIDs of other
lengths, stand for themselves.
"""

from __future__ import annotations

from typing import Final

__all__ = ["alternate_form", "luhn_check_digit"]

_WITH_CHECK: Final = 20  # printed form: 19 digits and the check digit
_WITHOUT_CHECK: Final = 19  # the platforms' form


# A digit doubled, as the digit sum of the product: 5 → 10 → 1.
_DOUBLED: Final = bytes.maketrans(b"0123456789", b"0246813579")
_ZERO: Final = ord("0")


def luhn_check_digit(digits: str) -> str:
    """The Luhn check digit of ``digits`` (ASCII digits): "7992739871" → "3".

    Every second digit from the right, starting with the last, is doubled (digit sum of
    the product); the check digit tops the sum up to a multiple of 10. ~0.5 us."""
    rev = digits.encode()[::-1]
    total = sum(rev[0::2].translate(_DOUBLED)) + sum(rev[1::2]) - _ZERO * len(rev)
    return chr(_ZERO + (10 - total % 10) % 10)


def alternate_form(iccid: str) -> str | None:
    """The other form of the same SIM's ICCID, or None when it has none.

    20 digits whose last is the Luhn check digit of the first 19 → the 19 digits;
    19 digits → the 19 digits and their check digit. ``iccid`` is ASCII digits."""
    n = len(iccid)
    if n == _WITHOUT_CHECK:
        return iccid + luhn_check_digit(iccid)
    if n == _WITH_CHECK:
        body = iccid[:_WITHOUT_CHECK]
        if luhn_check_digit(body) == iccid[_WITHOUT_CHECK]:
            return body
    return None
