"""Benchmark IccidIndex: memory per SIM and scalar/batch speed at fleet scale.

Run: ``python bench/bench_index.py [--sims 1000000] [--seed 1]``. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from typing import TYPE_CHECKING

import numpy as np

from simwatch.core.iccid_index import IccidIndex

if TYPE_CHECKING:
    from collections.abc import Callable


def make_iccids(count: int, seed: int) -> list[str]:
    """Realistic-ish fleet: mostly 19/20-digit "89..." ICCIDs in runs, some of every length."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < count:
        length = rng.choices([18, 19, 20, 21, 22], weights=[5, 45, 40, 5, 5])[0]
        lead = "89" if rng.random() < 0.95 else "00"
        issuer = f"{rng.randrange(10**5):05d}"
        base = rng.randrange(10 ** (length - 7))
        run = rng.randrange(1, 200)  # SIMs are issued in sequential batches
        for k in range(run):
            body = f"{base + k:0{length - 7}d}"[-(length - 7) :]
            out.add(lead + issuer + body)
    iccids = list(out)[:count]
    rng.shuffle(iccids)
    return iccids


def best_ns(fn: Callable[[], object], ops: int, repeats: int) -> float:
    """Best-of-``repeats`` wall time of ``fn()`` per op in ns (the machine may be shared)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / ops * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sims", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--probe", type=int, default=200_000, help="scalar ops to time")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    n: int = args.sims
    reps: int = args.repeats
    iccids = make_iccids(n, args.seed)
    rng = random.Random(args.seed + 2)
    sample = [iccids[rng.randrange(n)] for _ in range(min(args.probe, n))]
    unknown = ["99" + s[2:] for s in sample]  # known ICCIDs all start with 89 or 00
    gc.collect()

    indexes: list[IccidIndex] = []

    def build_scalar() -> None:
        index = IccidIndex()  # default capacity: the build includes every doubling
        add = index.add
        for s in iccids:
            add(s)
        indexes.append(index)

    t_build = best_ns(build_scalar, n, reps)
    index = indexes[-1]
    indexes.clear()
    print(f"sims                            {len(index):>10,}")
    print(f"nbytes                          {index.nbytes():>10,}")
    print(f"bytes/SIM (nbytes/len)          {index.nbytes() / len(index):>10.1f}")
    print(f"scalar add (new, incl. growth)  {t_build:>10.0f} ns/op")

    add, get = index.add, index.get
    ref: dict[str, int] = dict.fromkeys(sample, 0)
    ref_get = ref.get
    ns_dict = best_ns(lambda: [ref_get(s, -1) for s in sample], len(sample), reps)
    ns_add = best_ns(lambda: [add(s) for s in sample], len(sample), reps)
    ns_get = best_ns(lambda: [get(s) for s in sample], len(sample), reps)
    ns_miss = best_ns(lambda: [get(s) for s in unknown], len(unknown), reps)
    print(f"scalar add (known)              {ns_add:>10.0f} ns/op")
    print(f"scalar get (hit)                {ns_get:>10.0f} ns/op")
    print(f"scalar get (miss)               {ns_miss:>10.0f} ns/op")
    ratio = ns_get / ns_dict
    print(f"reference: dict.get same loop   {ns_dict:>10.0f} ns/op  (get/dict = {ratio:.1f}x)")

    rows = index.get_many(iccids)
    assert bool((rows == np.arange(n)).all())
    ns_many = best_ns(lambda: index.get_many(iccids), n, reps)
    print(f"get_many (1 batch of all)       {ns_many:>10.0f} ns/key = {1e3 / ns_many:.2f} M keys/s")
    ns_many_small = best_ns(
        lambda: [index.get_many(sample[i : i + 1000]) for i in range(0, len(sample), 1000)],
        len(sample),
        reps,
    )
    print(f"get_many (batches of 1000)      {ns_many_small:>10.0f} ns/key")
    ns_add_many = best_ns(lambda: IccidIndex().add_many(iccids), n, reps)
    print(f"add_many (1 batch, all new)     {ns_add_many:>10.0f} ns/key")

    assert index.iccids() == iccids
    ns_back = best_ns(index.iccids, n, reps)
    print(f"iccids() (all rows)             {ns_back:>10.0f} ns/row")
    probe_rows = range(min(args.probe, n))
    ns_one = best_ns(lambda: [index.iccid(r) for r in probe_rows], len(probe_rows), reps)
    print(f"iccid(row)                      {ns_one:>10.0f} ns/op")

    as_dict = dict(zip(iccids, range(n), strict=True))
    dict_bytes = sys.getsizeof(as_dict) + sum(sys.getsizeof(s) for s in iccids)
    print(f"reference: dict[str,int]        {dict_bytes / n:>10.1f} bytes/SIM (dict + key strings)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
