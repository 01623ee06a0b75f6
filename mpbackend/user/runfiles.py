"""A run's files: ``save``, ``restore``, ``log_code`` and ``init(save_code=True)``.

    save("model.pt") --copy, in the caller's thread--> <run dir>/model.pt
                     (policy "live"/"end": copied again when the run ends)
    restore("model.pt", run_path="project/id") <-- <dir>/<project>/<id>/model.pt
    log_code(".") / save_code --copy the *.py files--> <run dir>/code/...

As in wandb, every file in ``run.dir`` is one of the run's files (a file the
script writes there itself too), except the store's own (``run.db*``,
``run.lock``: ``shared.paths.is_store_file``), which no name given here can
reach. The files are plain copies beside the store, readable by any process
(``ApiRun.files()`` lists them). They never pass through the service: copying
is file I/O of the user's own files, done where they are.
"""

from __future__ import annotations

import glob as globlib
import os
import shutil
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from ..shared.errors import UsageError
from ..shared.paths import check_name, files_dir, is_store_file

if TYPE_CHECKING:
    from .run import Run

POLICIES = ("live", "now", "end")
# Directories log_code() never walks into: stores, environments, caches, VCS data.
SKIP_DIRS = frozenset({"mpruns", "wandb", ".venv", "venv", "__pycache__", "node_modules",
                       ".git", ".hg", ".svn", ".tox", ".mypy_cache", ".ruff_cache"})


def _inside(root: str, name: str) -> str:
    """``root/name``, refused (ValueError) if ``name`` would leave ``root`` or name one
    of the store's files."""
    text = os.fspath(name)
    if not text or os.path.isabs(text) or "\x00" in text:
        raise ValueError(f"a run file name must be a relative path, not {text!r}")
    path = os.path.normpath(os.path.join(root, text))
    if os.path.commonpath([path, os.path.abspath(root)]) != os.path.abspath(root) or \
            path == os.path.abspath(root):
        raise ValueError(f"the run file name {text!r} leaves the run's files directory")
    if os.path.dirname(path) == os.path.abspath(root) and is_store_file(os.path.basename(path)):
        raise ValueError(f"{text!r} is the name of one of the run's store files; choose "
                         "another name")
    return path


def _copy(source: str, target: str) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.abspath(source) != os.path.abspath(target):
        shutil.copyfile(source, target)


def save(run: Run, glob_str: str | os.PathLike, base_path: str | os.PathLike | None,
         policy: str, glob: bool = True) -> list[str]:
    """Copy the files ``glob_str`` matches into the run's files (see ``Run.save``)."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
    pattern = os.fspath(glob_str)
    if not isinstance(pattern, str) or not pattern:
        raise TypeError(f"save() needs a file name or glob, not {glob_str!r}")
    if base_path is None:
        # As wandb: relative to the directory of the pattern's fixed part.
        fixed = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
        base = os.path.dirname(fixed) or "."
    else:
        base = os.fspath(base_path)
    matches = sorted(globlib.glob(pattern, recursive=True)) if glob else [pattern]
    matches = [p for p in matches if os.path.isfile(p)]
    root = files_dir(run.dir)
    saved = []
    for source in matches:
        relative = os.path.relpath(os.path.abspath(source), os.path.abspath(base))
        if relative.startswith(os.pardir):
            raise ValueError(f"save(): {source!r} is not under base_path {base!r}")
        target = _inside(root, relative)
        if policy != "end":
            _copy(source, target)
        if policy != "now":
            run._at_end.append((source, target))  # copied again (or first) at finish
        saved.append(target)
    return saved


def copy_at_end(run: Run) -> None:
    """At finish: the files saved with policy ``live`` or ``end``, as they are now."""
    for source, target in run._at_end:
        try:
            if os.path.isfile(source):
                _copy(source, target)
        except OSError as exc:
            from .everyday import termwarn

            termwarn(f"could not save {source} at the end of the run: {exc}")
    run._at_end.clear()


def restore(name: str, run_path: str | None, replace: bool, root: str | None,
            current: Run | None, store_dir: str) -> IO[str]:
    """The file ``name`` of a run's files, copied to ``root``, opened for reading.

    ``run_path`` ("project/id" or "entity/project/id"; the current run if None)
    names the run in ``store_dir``. ValueError if there is no such file.
    """
    if run_path is None:
        if current is None:
            raise UsageError("restore() needs run_path, or a run started with init()")
        source_dir = current.dir
    else:
        parts = [p for p in str(run_path).replace("/runs/", "/").strip("/").split("/") if p]
        if len(parts) not in (2, 3):
            raise ValueError(f"run_path must be 'project/run_id' or 'entity/project/run_id', "
                             f"not {run_path!r}")
        project, run_id = (check_name("project", parts[-2]), check_name("run id", parts[-1]))
        source_dir = os.path.join(store_dir, project, run_id)
    source = _inside(files_dir(source_dir), name)
    if not os.path.isfile(source):
        raise ValueError(f"the file {name!r} is not among the files of run {source_dir}")
    if root is None:
        root = files_dir(current.dir) if current is not None else os.getcwd()
    target = _inside(root, name)
    if replace or not os.path.exists(target):
        _copy(source, target)
    return open(target, encoding="utf-8", errors="replace")


def _accepts(fn: Callable[..., bool], path: str, root: str) -> bool:
    try:
        return bool(fn(path, root))
    except TypeError:
        return bool(fn(path))  # wandb allows a one-argument filter too


def is_code(path: str, root: str = "") -> bool:
    """log_code()'s default filter: Python sources."""
    return path.endswith(".py")


def log_code(run: Run, root: str | None, include_fn: Callable[..., bool],
             exclude_fn: Callable[..., bool] | None) -> list[str]:
    """Copy the code files under ``root`` into ``<run dir>/code/``."""
    root = os.path.abspath(root or ".")
    target_root = os.path.join(files_dir(run.dir), "code")
    store = os.path.abspath(run._settings.dir)
    saved = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")
                         and os.path.abspath(os.path.join(folder, d)) != store)
        for filename in sorted(names):
            path = os.path.join(folder, filename)
            if not _accepts(include_fn, path, root):
                continue
            if exclude_fn is not None and _accepts(exclude_fn, path, root):
                continue
            target = _inside(target_root, os.path.relpath(path, root))
            _copy(path, target)
            saved.append(target)
    return saved


def save_program(run: Run) -> str | None:
    """``init(save_code=True)``: the script that runs, copied to ``<run dir>/code/``."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not os.path.isfile(path):
        return None  # a notebook or ``python -c``: no file to save
    target = _inside(os.path.join(files_dir(run.dir), "code"), os.path.basename(path))
    _copy(path, target)
    return target
