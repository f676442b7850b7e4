# ruff: noqa: INP001 - a standalone script, run as `python grafana/build.py`, not a package
"""Build simwatch's Grafana dashboards (the one source of truth for grafana/dashboards/).

    python grafana/build.py           # (re)write grafana/dashboards/*.json
    python grafana/build.py --check   # exit 1 if a committed file differs from the build

Standard library only. Every dashboard refers to its datasources by uid: ``prometheus``
(metrics of docs/metrics.md) and ``influxdb`` (InfluxDB 2, Flux, the schema of
simwatch/sinks/influx/schema.py). tests/test_grafana.py runs every Prometheus query of
these dashboards against a real Prometheus scraping a running simwatch, checks every
Flux query against the InfluxDB schema, and checks the committed files equal this build.

The dashboards are built in ``board_fleet.py``, ``board_incidents.py`` and ``board_sim.py``
from the shared pieces of ``widgets.py`` (next to this script, imported as top-level
modules: the script's folder is the first entry of ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Final

from board_fleet import fleet
from board_incidents import incidents
from board_sim import sim

OUT: Final = Path(__file__).resolve().parent / "dashboards"

# ---- output -----------------------------------------------------------------------------


def build() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    boards = {"fleet.json": fleet(), "incidents.json": incidents(), "sim.json": sim()}
    return {name: json.dumps(board, indent=2) + "\n" for name, board in boards.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    args = parser.parse_args(argv)
    out: Path = args.out
    stale = []
    for name, text in build().items():
        path = out / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        names = ", ".join(str(p) for p in stale)
        print(f"out of date (run python grafana/build.py): {names}", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
