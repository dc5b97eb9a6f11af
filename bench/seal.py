"""How long sealing a record takes to look for registered secrets, by record size.

The seal slides a window of every registered value's length over every text of the record
(and its HTML export) and asks whether the window's keyed fingerprint is a registered one.
Hashing every window with BLAKE2b made the seal of one health-check record take 7-9 s, and it
grew with every value registered; the keyed rolling hash (records.redaction.RollingWindows)
picks candidates with numpy and BLAKE2b only confirms them. This prints both, on the same
texts with the same registered values, and checks they find the same places.

    .venv/bin/python bench/seal.py [--kib 100 400 1600] [--values 8]
"""
from __future__ import annotations

import argparse
import random
import secrets
import string
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kib", type=int, nargs="+", default=[100, 400, 1600], help="text sizes, KiB")
    parser.add_argument("--values", type=int, default=8, help="registered secret values (each has several printed forms)")
    args = parser.parse_args()

    from runbooks_lib.records.redaction import FingerprintFinder, FingerprintStore

    store = FingerprintStore(Path(tempfile.mkdtemp()))
    values = [secrets.token_urlsafe(random.randint(16, 40)) for _ in range(args.values)]
    store.add(values)
    fast = store.finder()
    slow = FingerprintFinder(fast.salt, fast.by_length, prefilters={})  # every window through BLAKE2b
    print(f"{args.values} registered values, {len(fast.by_length)} distinct window lengths")
    print(f"{'KiB':>6} {'every window (s)':>17} {'rolling hash (s)':>17} {'speed-up':>9}  same hits")
    rng = random.Random(1)
    for kib in args.kib:
        text = "".join(rng.choice(string.ascii_letters + " \n|") for _ in range(kib * 1024))
        for value in values[:3]:  # a few planted, so both must find them
            at = rng.randrange(len(text) - 64)
            text = text[:at] + value + text[at + len(value):]
        began = time.perf_counter()
        quick = fast.find(text)
        fast_s = time.perf_counter() - began
        began = time.perf_counter()
        thorough = slow.find(text)
        slow_s = time.perf_counter() - began
        print(f"{kib:>6} {slow_s:>17.2f} {fast_s:>17.3f} {slow_s / fast_s:>8.0f}×  {quick == thorough} ({len(quick)} hits)")


if __name__ == "__main__":
    main()
