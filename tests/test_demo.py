"""``simwatch demo``: what it prints of the faults it injected."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from simwatch.sim.demo import main
from simwatch.sim.scoring import FINDING_OF_FAULT

if TYPE_CHECKING:
    import pytest


def test_the_per_sim_demo_says_what_support_reads_of_each_faulty_sim(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Faults of single SIMs page no one, so the demo's incident table is empty: it printed
    # nothing else, and a user trying the per-SIM scenario saw "(no incidents)" alone.
    assert main(["--scenario", "per_sim"]) == 0
    out = capsys.readouterr().out
    assert "(no incidents)" in out
    section = out.split("per-SIM faults, what support reads of each SIM")[1]
    injected = out.split("injected:")[1].split("replaying")[0]
    for kind, code in FINDING_OF_FAULT.items():
        assert f"  {kind:<18} 5 SIMs" in injected
        lines = section.split(f"\n  {kind}:\n")[1].splitlines()
        block = "\n".join(itertools.takewhile(lambda line: line.startswith("    "), lines))
        rows = [line.split() for line in block.splitlines() if line.startswith("    8")]
        assert len(rows) == 5, block
        for iccid, *codes in rows:
            assert code in " ".join(codes), (kind, iccid, codes)
        # and the first SIM's finding in full, as the per-SIM view says it
        assert f"      {code}: " in block
