"""Reading the inventory file: opens it and streams it through the core's parser."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simwatch.core.inventory import InventoryError, InventoryRow, parse_inventory

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from simwatch.core.records import Rejection


def iter_inventory(path: Path) -> Iterator[InventoryRow | Rejection]:
    """Stream the inventory file: one InventoryRow or Rejection per non-blank data row.

    Raises InventoryError for whole-file problems, naming the file."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read the inventory: {exc.strerror}") from exc
    with handle:
        yield from parse_inventory(handle, str(path))


def load_inventory(path: Path) -> tuple[list[InventoryRow], list[Rejection]]:
    """Read the whole inventory file: (good rows, rejected rows)."""
    rows: list[InventoryRow] = []
    rejected: list[Rejection] = []
    for item in iter_inventory(path):
        if isinstance(item, InventoryRow):
            rows.append(item)
        else:
            rejected.append(item)
    return rows, rejected
