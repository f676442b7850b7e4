"""The fake platforms serve the platforms' documented examples, not our guesses.

``tests/data/cmp/`` holds the payloads the fakes and adapter tests are built from. Each
is named in one of the folder's READMEs with the place in the platform's published
material it comes from, and is a byte-for-byte copy of ``../shared/cmp/examples/`` (the
documented examples with their sources) where that folder has it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data" / "cmp"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "cmp" / "examples"
COPIES = sorted(DATA.glob("*.json"))


def readme_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DATA.glob("README*.md")))


def test_every_payload_names_its_source() -> None:
    text = readme_text()
    unnamed = [p.name for p in COPIES if f"`{p.name}`" not in text]
    assert COPIES
    assert unnamed == []


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/cmp/examples is not beside the project")
@pytest.mark.parametrize("copy", COPIES, ids=[p.name for p in COPIES])
def test_payload_is_the_documented_example(copy: Path) -> None:
    original = SHARED / copy.name
    if not original.exists():  # a spec example the shared folder lacks (README: its source)
        pytest.skip(f"{copy.name} is not in ../shared/cmp/examples")
    assert copy.read_bytes() == original.read_bytes()
