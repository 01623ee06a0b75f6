"""What the side-by-side benchmarks share: source trees to compare, and their tables.

    bench/backend.py --tree A --tree B        bench/service_start.py --tree A --tree B
        --> compile_tree(A), compile_tree(B)   (as pip byte-compiles an installed package)
        --> fresh processes per tree, interleaved, PYTHONPATH=<tree>
        --> cells(): medians or min-max per figure; describe(): the tree's commit
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess

# A figure: (key in a measurement, scale, format spec).
Figure = tuple[str, float, str]


def compile_tree(tree: str) -> None:
    """As pip does for an installed package (a checkout may run without .pyc files)."""
    package = os.path.join(tree, "mpbackend")
    if not os.path.isfile(os.path.join(package, "__init__.py")):
        raise SystemExit(f"{tree}: no mpbackend package there")
    compileall.compile_dir(package, quiet=1)


def cells(runs: list[dict], figures: tuple[Figure, ...], spread: bool = False) -> str:
    """The figures of a table row: medians, or min-max over the repetitions."""
    out = []
    for key, scale, fmt in figures:
        values = [r[key] * scale for r in runs]
        if spread:
            out.append(f"{format(min(values), fmt)}-{format(max(values), fmt)}")
        else:
            out.append(format(statistics.median(values), fmt))
    return " | ".join(out)


def describe(tree: str) -> str:
    """The commit a tree has checked out (and whether it has changes), if it is a git one."""
    try:
        head = subprocess.run(["git", "-C", tree, "log", "-1", "--format=%h %s"],
                              capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "-C", tree, "status", "--porcelain", "--", "mpbackend"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "not a git tree"
    if head.returncode != 0:
        return "not a git tree"
    subject = head.stdout.strip()
    subject = subject if len(subject) <= 70 else subject[:67] + "..."
    return subject + (" (mpbackend/ has uncommitted changes)" if dirty.stdout.strip() else "")
