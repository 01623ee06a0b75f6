"""Reading a run back: ``Api.run()`` and ``ApiRun.history()`` of a 1,000,000-row run.

    python bench/read_history.py --make DIR               # the run, made with this tree
    PYTHONPATH=<tree> python -B bench/read_history.py LABEL DIR

The stored form is the same for every tree measured, so trees compare readers
(the checks a reader makes on what it reads cost time: this says how much).
"""

from __future__ import annotations

import statistics
import sys
import time

import mpbackend


def make(root: str) -> None:
    run = mpbackend.init(project="p", id="big", dir=root)
    for i in range(1_000_000):
        run.log({"loss": 1.0 / (i + 1), "acc": i / 1e6})
    run.finish(quiet=True)


def measure(label: str, root: str, repeat: int = 7) -> None:
    api = mpbackend.Api(root)
    reads, opens = [], []
    rows = 0
    for _ in range(repeat):
        started = time.perf_counter()
        run = api.run("p/big")
        opens.append(time.perf_counter() - started)
        started = time.perf_counter()
        rows = len(run.history())
        reads.append(time.perf_counter() - started)
    print(f"{label}: history() of {rows:,} rows: median {statistics.median(reads) * 1e3:.0f} ms "
          f"(min {min(reads) * 1e3:.0f}); Api.run(): median "
          f"{statistics.median(opens) * 1e3:.2f} ms ({repeat} reads)")


if __name__ == "__main__":
    if sys.argv[1] == "--make":
        make(sys.argv[2])
    else:
        measure(sys.argv[1], sys.argv[2])
