"""``make bench``: run every ``tests/bench/bench_*.py`` module's ``main()`` and print its figures.

Speed and size are measured here, never by timed tests.  ``make bench ONLY=site`` runs one module.
"""

import importlib
import os
import sys
import time
from pathlib import Path


def main() -> None:
    only = os.environ.get("ONLY", "")
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if only:
        names = [n for n in names if n == f"bench_{only}"]
        if not names:
            valid = ", ".join(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
            sys.exit(f"bench: no module bench_{only}.py; valid: {valid}")
    for name in names:
        print(f"\n== {name.removeprefix('bench_')} ==", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"tests.bench.{name}").main()
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
