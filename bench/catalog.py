"""Catalog indexing of 10 000 generated records: cold (no cache) and warm (cache, nothing changed).

    .venv/bin/python bench/catalog.py [--records 10000] [--keep DIR]

Goal (issue 5): cold ≤ 5 s, warm well under 1 s. Also prints an incremental pass (10 new
records) and the DataFrame build time.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import sys
import time
from pathlib import Path

from runbooks_lib.records.catalog import Catalog, RecordFilter

# The made-up records live with the tests (tests/generators), outside the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.generators.records import generate_records  # noqa: E402


def timed(label: str, action) -> object:
    begun = time.perf_counter()
    result = action()
    print(f"{label:38} {time.perf_counter() - begun:7.3f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="write the records here and keep them")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="catalog-bench-"))
    try:
        timed(f"generate {args.records} records", lambda: generate_records(root, args.records))
        size = sum(p.stat().st_size for p in root.rglob("*.ipynb"))
        print(f"{'records on disk':38} {size / 1e6:7.1f} MB")
        (root / ".catalog.json").unlink(missing_ok=True)
        catalog = Catalog(root)
        rows = timed("cold: index every record", catalog.rows)
        print(f"{'   rows / files read':38} {len(rows)} / {catalog.last_stats['read']}")
        timed("warm: nothing changed", catalog.rows)
        print(f"{'   files read':38} {catalog.last_stats['read']}")
        generate_records(root / "new", 10, seed=99)
        timed("incremental: 10 new records", catalog.rows)
        print(f"{'   files read':38} {catalog.last_stats['read']}")
        timed("warm + filter env=production", lambda: catalog.rows(RecordFilter(env="production", outcome="failed")))
        frame = timed("warm + pandas DataFrame", catalog.dataframe)
        print(f"{'   DataFrame shape':38} {frame.shape}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
