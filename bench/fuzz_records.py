"""A long fuzzing run of the "Bad input" properties, outside the test suite.

    python bench/fuzz_records.py                      # records only, 10 minutes
    python bench/fuzz_records.py --minutes 60 --scale 50 --suites records,config,api
    python bench/fuzz_records.py --seed 12345 --rounds 1   # replay one round exactly

The suite runs the same property tests (tests/test_fuzz_*.py, tests/test_http_security.py
has no fuzzing beyond a small token property) with a fixed number of examples and a
fixed seed, about 40 s in all. This script runs them again and again, each round with
``FUZZ_SCALE`` times the examples and a fresh random seed, until the time is up or a
round fails. A failing round prints its seed: ``--seed N --rounds 1`` with the same
``--scale`` replays it, and Hypothesis prints the smallest failing example it found.

atheris (coverage-guided) is not installed in this environment, so the search
is Hypothesis's; it is structure-aware (valid records mutated one field at a time,
mangled bytes of valid lines, whole payloads), which finds the decoder's edge cases
faster than blind byte flipping would.

Everything runs on 127.0.0.1 only (the API suite starts its own test server).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = {
    "records": "tests/test_fuzz_records.py",
    "inventory": "tests/test_fuzz_inventory.py",
    "config": "tests/test_fuzz_config.py",
    "api": "tests/test_fuzz_api.py",
}


def run_round(files: list[str], scale: int, seed: int) -> int:
    """One pytest run of the property tests; returns pytest's exit code."""
    env = dict(os.environ, FUZZ_SCALE=str(scale))
    command = [
        sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
        f"--hypothesis-seed={seed}",
        "--hypothesis-show-statistics", *files,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, check=False)  # noqa: S603 - our argv
    return done.returncode


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="stop after this long")
    parser.add_argument("--scale", type=int, default=20, help="examples x this per test")
    parser.add_argument("--rounds", type=int, default=0, help="stop after N rounds (0: time)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the first round")
    parser.add_argument(
        "--suites", default="records", help=f"comma-separated, of {', '.join(SUITES)}"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.suites.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown or not names:
        parser.error(f"unknown suite(s) {unknown}; choose from {', '.join(SUITES)}")
    if args.scale < 2:  # scale 1 is the suite's own fixed-seed run
        parser.error("--scale must be at least 2 (1 is what the test suite runs)")
    files = [SUITES[n] for n in names]
    deadline = time.monotonic() + args.minutes * 60
    seeds = random.SystemRandom()
    seed = args.seed if args.seed is not None else seeds.randrange(2**32)
    rounds = 0
    while True:
        rounds += 1
        started = time.monotonic()
        print(f"== round {rounds}: --scale {args.scale} --seed {seed} ({', '.join(names)})")
        code = run_round(files, args.scale, seed)
        print(f"== round {rounds}: exit {code} in {time.monotonic() - started:.0f} s")
        if code != 0:
            print(f"FAILED: replay with --seed {seed} --scale {args.scale} --rounds 1")
            return code
        if (args.rounds and rounds >= args.rounds) or time.monotonic() >= deadline:
            print(f"OK: {rounds} round(s), no failure")
            return 0
        seed = seeds.randrange(2**32)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
