"""spawnmain: children spawned from a script with no ``if __name__ == "__main__":`` guard.

    user script (no guard) --DataLoader / Pool / Process, spawn or forkserver--> child
        child normally: runs the whole script again as __mp_main__ (init(), the
                        training loop, starting processes while bootstrapping: it dies)
        with mpbackend: runs mpbackend.user.childmain as __mp_main__, which executes
                        only the script's imports, function and class definitions
                        and constant assignments

A spawned child rebuilds the parent's ``__main__`` so that objects defined there
(a Dataset class, a worker_init_fn) can be unpickled. Without a main guard that
means re-running the training script in every worker. While mpbackend is set up,
``install()`` wraps ``multiprocessing.spawn.get_preparation_data``: for a parent
whose main script has no guard, the child is told to run ``childmain`` instead,
which reads the script and executes its definitions only. Scripts with a guard,
and ``python -m`` modules, are left as multiprocessing handles them.
"""

from __future__ import annotations

import ast
import functools
import multiprocessing.spawn
import os
from typing import Any

ENV = "MPBACKEND_SPAWN_MAIN"
_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                ast.ClassDef)
_original = multiprocessing.spawn.get_preparation_data


def _is_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    parts = [node.test.left, *node.test.comparators]
    names = {p.id for p in parts if isinstance(p, ast.Name)}
    consts = {p.value for p in parts if isinstance(p, ast.Constant)}
    return "__name__" in names and "__main__" in consts


@functools.lru_cache(maxsize=8)
def unguarded(path: str) -> bool:
    """True if the script at ``path`` has top-level code but no main guard."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return False
    return not any(_is_guard(node) for node in tree.body)


def _constant(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def definitions(source: str, path: str) -> Any:
    """The script's imports, defs, classes and constant assignments, compiled."""
    tree = ast.parse(source, path)
    kept: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, _DEFINITIONS):
            kept.append(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None \
                and _constant(node.value):
            kept.append(node)
        elif isinstance(node, ast.Try) and all(isinstance(n, _DEFINITIONS) for n in node.body):
            kept.append(node)
    tree.body = kept
    return compile(tree, path, "exec")


def _preparation_data(name: str) -> dict[str, Any]:
    data = _original(name)
    path = data.get("init_main_from_path")
    if path and unguarded(path):
        del data["init_main_from_path"]
        data["init_main_from_name"] = "mpbackend.user.childmain"
        os.environ[ENV] = path  # children inherit the environment
    return data


def install() -> None:
    """Make spawned children of an unguarded script run its definitions only."""
    multiprocessing.spawn.get_preparation_data = _preparation_data


def run_definitions(namespace: dict[str, Any]) -> None:
    """Execute the parent's script's definitions into ``namespace`` (the child's main)."""
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, encoding="utf-8") as f:
        code = definitions(f.read(), path)
    namespace["__file__"] = path
    exec(code, namespace)
