"""Api: read runs back from a run directory, in any process, live or finished.

    <dir>/<project>/<run id>/run.db --store.RunReader--> ApiRun --> history() DataFrame
                                                                --> scan_history() rows
                                                                --> system_metrics()
    Api(dir).runs(project, filters, order) --> [ApiRun, ...]

Paths are wandb's: ``Api().runs("entity/project")``, ``Api().run("entity/project/id")``
(also ``entity/project/runs/id``, ``project/id``, ``project:id`` and the id alone);
the entity is accepted and, for a run started with one, recorded
(``ApiRun.entity``), never required to match.

Nothing here talks to the service: the reader opens each run's SQLite database
read-only, so it works on a run that is being written (it sees every committed
transaction, that is everything before the last ``flush()`` and at most
``commit_interval`` more), on a finished one and on a crashed one.

Nothing read is trusted (``store.reader`` says what a reader refuses): a run
whose database is damaged or hostile raises StoreError naming its file, and
``Api.runs()`` leaves it out, keeps the message in ``Api.errors`` and lists the
others. A row's ``_step`` is always its stored step: a history column named
``_step`` (an old run that logged one) is not read.

``filters`` follow the MongoDB-style queries of wandb's public API:
``{"state": "finished"}``, ``{"config.lr": {"$lt": 0.1}}``,
``{"summary.loss": {"$lte": 0.5}}``, ``{"tags": {"$in": ["baseline"]}}``,
``{"$or": [..., ...]}``; operators ``$eq $ne $gt $gte $lt $lte $in $nin
$exists $regex``, and ``$and $or $nor`` to combine.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import re
import shutil
from collections.abc import Iterator
from typing import IO, Any

from ..media.refs import as_ref, refs_in
from ..shared import environ
from ..shared.errors import NoSuchRun, StoreError
from ..shared.paths import DB_NAME, check_name, files_dir, is_store_file
from ..store.reader import STEP_KEY, RunReader, checked_values
from ..store.writer import edit_run

_OPS = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a is not None and a > b,
    "$gte": lambda a, b: a is not None and a >= b,
    "$lt": lambda a, b: a is not None and a < b,
    "$lte": lambda a, b: a is not None and a <= b,
    "$in": lambda a, b: (bool(set(a) & set(b)) if isinstance(a, list) else a in b),
    "$nin": lambda a, b: not (bool(set(a) & set(b)) if isinstance(a, list) else a in b),
    "$regex": lambda a, b: isinstance(a, str) and re.search(b, a) is not None,
}
_MISSING = object()


def _lookup(doc: dict[str, Any], path: str) -> Any:
    """``config.lr`` in a run's document: config, summary, then dotted keys as stored."""
    if path in doc:
        return doc[path]
    head, _, rest = path.partition(".")
    value = doc.get(head, _MISSING)
    if not rest:
        return value
    if isinstance(value, dict):
        if rest in value:  # keys logged as "val.loss" are stored flat
            return value[rest]
        return _lookup(value, rest)
    return _MISSING


def _match(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    for key, cond in query.items():
        if key == "$and":
            if not all(_match(doc, q) for q in cond):
                return False
        elif key == "$or":
            if not any(_match(doc, q) for q in cond):
                return False
        elif key == "$nor":
            if any(_match(doc, q) for q in cond):
                return False
        else:
            value = _lookup(doc, key)
            if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
                for op, arg in cond.items():
                    if op == "$exists":
                        if (value is not _MISSING) != bool(arg):
                            return False
                        continue
                    if op not in _OPS:
                        raise ValueError(f"unknown filter operator {op!r}")
                    if value is _MISSING or not _safe(_OPS[op], value, arg):
                        return False
            elif isinstance(value, list) and not isinstance(cond, list):
                if cond not in value:  # {"tags": "x"}: x is one of the tags
                    return False
            elif value is _MISSING or value != cond:
                return False
    return True


def _safe(op: Any, a: Any, b: Any) -> bool:
    try:
        return bool(op(a, b))
    except TypeError:
        return False


class ApiRun:
    """One stored run: metadata, config, summary and history."""

    def __init__(self, run_dir: str) -> None:
        self.dir = run_dir
        with RunReader(run_dir) as reader:
            info = reader.info()
        self._info = info
        self.id: str = info["id"]
        self.name: str = info["name"] or info["id"]
        self.project: str = info["project"]
        self.state: str = info["state"]
        self.config: dict[str, Any] = info["config"]
        self.summary: dict[str, Any] = ApiSummary(self, refs_in(info["summary"], self.dir))
        self.tags: list[str] = info["tags"]
        self.notes: str | None = info["notes"]
        self.group: str | None = info["group"]
        self.job_type: str | None = info["job_type"]
        self.created_at: float = info["created_at"]
        self.updated_at: float = info["updated_at"]
        self.exit_code: int | None = info["exit_code"]
        self.step: int = info["step"]
        entity = info["extra"].get("entity")
        self.entity: str = entity if isinstance(entity, str) else ""
        self._edits = self._editable()

    @property
    def path(self) -> str:
        """``entity/project/id`` (``project/id`` without an entity)."""
        return "/".join(p for p in (self.entity, self.project, self.id) if p)

    @property
    def url(self) -> str:
        """A ``file://`` URL of the run's directory."""
        return pathlib.Path(self.dir).absolute().as_uri()

    @property
    def lastHistoryStep(self) -> int:  # noqa: N802  (wandb's name)
        """The step of the run's last history row, -1 if it has none."""
        with RunReader(self.dir) as reader:
            return reader.last_step()

    @property
    def metadata(self) -> dict[str, Any]:
        """Where and when the run ran: host, pid, start time (ISO, UTC), state."""
        info = self._info
        return {"host": info["host"], "pid": info["pid"], "state": info["state"],
                "startedAt": datetime.datetime.fromtimestamp(
                    info["created_at"], datetime.timezone.utc).isoformat()}

    def _editable(self) -> dict[str, Any]:
        return {"name": self.name, "notes": self.notes, "tags": list(self.tags),
                "config": self.config, "summary": self.summary, "run_group": self.group,
                "job_type": self.job_type}

    def update(self) -> None:
        """Store the edits made to ``summary``, ``config``, ``name``, ``tags``, ``notes``,
        ``group`` and ``job_type`` of this ApiRun, as wandb's ``Run.update()`` does.

        Only for a run that no process is writing: a live run raises UsageError
        (set these through the run itself). The values are checked as init()
        checks them.
        """
        fields: dict[str, Any] = {
            "name": self.name, "notes": self.notes, "tags": self.tags, "config": self.config,
            "summary": self.summary, "run_group": self.group, "job_type": self.job_type}
        for key in ("name", "notes", "run_group", "job_type"):
            if fields[key] is not None and not isinstance(fields[key], str):
                raise TypeError(f"ApiRun.{key} must be a str or None, not {fields[key]!r}")
        tags = fields["tags"]
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags or ()):
            raise TypeError(f"ApiRun.tags must be a list of str, not {tags!r}")
        fields["tags"] = list(tags or ())
        for key in ("config", "summary"):
            if not isinstance(fields[key], dict):
                raise TypeError(f"ApiRun.{key} must be a dict, not {type(fields[key])}")
        if fields["name"] == self.id and self._info["name"] is None:
            fields["name"] = None  # the id shown as the name, not a name given
        changed = {k: v for k, v in fields.items()
                   if k in ("config", "summary") or v != self._edits.get(k)}
        changed["summary"] = dict(changed["summary"])
        edit_run(self.dir, self.id, changed)
        with RunReader(self.dir) as reader:
            self._info = reader.info()
        self._edits = self._editable()

    def files(self, names: list[str] | None = None, pattern: str | None = None,
              per_page: int = 50) -> list[ApiFile]:
        """The run's saved files (``save()``, ``log_code()``, ``save_code``), by name;
        ``names`` keeps those, ``pattern`` (a glob) those that match."""
        import fnmatch

        found = _listing(self.dir)
        if names is not None:
            found = [f for f in found if f.name in names]
        if pattern is not None:
            found = [f for f in found if fnmatch.fnmatch(f.name, pattern)]
        return found

    def file(self, name: str) -> ApiFile:
        """One saved file by name (KeyError if the run has no such file)."""
        for found in _listing(self.dir):
            if found.name == name:
                return found
        raise KeyError(f"run {self.id} has no file {name!r}")

    def logged_artifacts(self, per_page: int = 100) -> list[Any]:
        """The artifact versions this run logged (Artifact objects, read-only)."""
        return [self._artifact(label) for label in self._info["extra"].get(
            "logged_artifacts", []) if isinstance(label, str)]

    def used_artifacts(self, per_page: int = 100) -> list[Any]:
        """The artifact versions this run used (``use_artifact``)."""
        return [self._artifact(label) for label in self._info["extra"].get(
            "used_artifacts", []) if isinstance(label, str)]

    def _artifact(self, label: str) -> Any:
        return _artifact(os.path.dirname(os.path.dirname(self.dir)), label, self.project)

    def info(self) -> dict[str, Any]:
        """Every stored field of the run (host, pid, ``extra`` with drop counts, ...), as
        read when this ApiRun was made: the same dict ``RunReader.info()`` returns."""
        return dict(self._info)

    def __repr__(self) -> str:
        return f"<ApiRun {self.path} ({self.state})>"

    def _document(self) -> dict[str, Any]:
        doc = dict(self._info)
        doc["path"] = self.path
        return doc

    def history(self, keys: list[str] | None = None, samples: int | None = None,
                pandas: bool = True, x_axis: str = "_step") -> Any:
        """The run's history, one row per step.

        ``keys`` keeps those columns (and ``x_axis``) and only the rows that have
        all of them; ``samples`` picks that many evenly spaced rows, the first
        and last included. A pandas DataFrame, or a list of dicts with
        ``pandas=False`` (pandas is the optional ``pandas`` extra).
        """
        if pandas:
            _need_pandas("history()")
            return _frame(self.dir, keys, samples, x_axis)
        rows = list(self.scan_history(keys=None if keys is None else [x_axis, *keys]))
        if keys is not None:  # the columns the DataFrame has: x_axis and the keys
            wanted = list(dict.fromkeys([x_axis, *keys]))
            rows = [{k: row[k] for k in wanted} for row in rows]
        if samples is not None and len(rows) > samples:
            rows = [rows[i] for i in _sample_positions(len(rows), samples)]
        return rows

    def scan_history(self, keys: list[str] | None = None, page_size: int = 1000,
                     min_step: int | None = None, max_step: int | None = None
                     ) -> Iterator[dict[str, Any]]:
        """Every row (dict) in step order, read a chunk at a time.

        With ``keys``, only rows that have all of them, with just those keys and
        ``_step``. ``page_size`` is accepted for wandb compatibility; rows are
        read one stored chunk (up to 1,024 rows) at a time.
        """
        run_dir = self.dir
        with RunReader(run_dir) as reader:
            for row in reader.rows(min_step, max_step, keys):
                if keys is None or all(k in row for k in keys):
                    for key, value in row.items():
                        if type(value) is dict or type(value) is list:
                            row[key] = as_ref(value, run_dir)  # media as MediaRef
                    yield row


    def system_metrics(self, pandas: bool = True) -> Any:
        """The system metrics the service sampled while the run was open, in time order.

        One row per sample with ``_timestamp``, ``_runtime`` and the figures:
        ``system/cpu_percent``, ``system/memory_percent``, ``system/disk_read_mb``
        (cumulative), ``proc/rss_mb`` (the training process and its descendants),
        ``gpu/0/utilization``, ...; the full list is in ``mpbackend.service.system``. A
        pandas DataFrame (a figure missing from a sample is NaN), or a list of
        dicts with ``pandas=False``. A run stored with sampling off has none.
        """
        with RunReader(self.dir) as reader:
            rows = reader.system()
        if not pandas:
            return rows
        _need_pandas("system_metrics()")
        import pandas as pd

        keys: dict[str, None] = {"_timestamp": None, "_runtime": None}
        for row in rows:
            keys.update(dict.fromkeys(row))
        return pd.DataFrame(rows, columns=list(keys))


class ApiSummary(dict):
    """An ApiRun's summary: a dict; ``summary.update(...)`` stores it at once (with the
    run's other edits), as wandb's public ``run.summary.update()`` does. Item sets
    are stored by ``update()`` of the summary or of the run."""

    def __init__(self, run: ApiRun, items: dict[str, Any]) -> None:
        super().__init__(items)
        self._run = run

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._run.update()

    def __reduce__(self) -> tuple:
        return dict, (dict(self),)


class ApiFile:
    """One saved file of a run: its name (relative to the run's files), size and path."""

    def __init__(self, name: str, size: int, path: str) -> None:
        self.name = name
        self.size = size
        self.path = path

    @property
    def url(self) -> str:
        return pathlib.Path(self.path).absolute().as_uri()

    def download(self, root: str = ".", replace: bool = False,
                 exist_ok: bool = False) -> IO[str]:
        """Copy the file to ``root/<name>`` and open it for reading, as wandb's
        ``File.download`` does (ValueError if it is there and neither ``replace``
        nor ``exist_ok``)."""
        target = os.path.join(root, self.name)
        if os.path.exists(target) and not replace:
            if not exist_ok:
                raise ValueError(f"{target} exists; pass replace=True or exist_ok=True")
        else:
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
            shutil.copyfile(self.path, target)
        return open(target, encoding="utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"<ApiFile {self.name} ({self.size} bytes)>"


def _listing(run_dir: str) -> list[ApiFile]:
    """A run's saved files: every file in its directory but the store's; links are
    not followed (nothing read is trusted)."""
    root = files_dir(run_dir)
    found = []
    for folder, _, names in os.walk(root):
        for filename in names:
            path = os.path.join(folder, filename)
            if folder == root and is_store_file(filename):
                continue
            if os.path.isfile(path) and not os.path.islink(path):
                found.append(ApiFile(os.path.relpath(path, root), os.path.getsize(path), path))
    return sorted(found, key=lambda f: f.name)


def _need_pandas(what: str) -> None:
    """ImportError that says what to do when pandas (the ``pandas`` extra) is missing."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise ImportError(f"{what} returns a pandas DataFrame, and pandas is not installed: "
                          "pip install 'mpbackend[pandas]', or pass pandas=False for a list "
                          "of dicts") from None


def _sample_positions(n: int, samples: int) -> list[int]:
    if samples <= 0:
        return []
    if samples == 1:
        return [0]
    return sorted({round(i * (n - 1) / (samples - 1)) for i in range(samples)})


def _column(np: Any, path: str, chunks: list, offsets: Any, n: int, key: str,
            kinds: set[str], plain: bool = False) -> tuple[Any, Any]:
    """One history column as a numpy array, and where it was logged (a bool mask).

    Dense int64 columns stay int64; numbers with gaps, or ints mixed with floats,
    become float64 with NaN where the key was not logged; everything else is an
    object array with None there (a dense all-bool column becomes bool).
    ``chunks`` come from ``RunReader.raw_chunks`` (the positions and the length of
    f8/i8 data checked there); a json column is decoded with ``checked_values``.

    ``plain`` (an export, which writes what is stored and masks what is not):
    int64 columns stay int64 with gaps too (0 there), and a json column's values
    stay as stored (a media reference as its dict), in an object array.
    """
    numeric = kinds <= {"f8", "i8"}
    if numeric and len(kinds) == 1:
        # Logged in every row of every chunk (the common case): the stored arrays
        # joined, one copy, no fill.
        parts = [cols.get(key) for _, cols in chunks]
        if all(part is not None and part[1] is None for part in parts):
            dtype = "<f8" if kinds == {"f8"} else "<i8"
            joined = np.concatenate([np.frombuffer(part[2], dtype=dtype) for part in parts]) \
                if parts else np.empty(0, dtype=dtype)
            return joined, np.ones(n, dtype=bool)
    present = np.zeros(n, dtype=bool)
    ints = np.zeros(n, dtype="<i8") if kinds == {"i8"} else None
    out = np.full(n, np.nan, dtype="f8") if numeric else np.full(n, None, dtype=object)
    for number, ((_, cols), start) in enumerate(zip(chunks, offsets[:-1])):
        col = cols.get(key)
        if col is None:
            continue
        kind, idx, data = col
        rows = int(offsets[number + 1] - start)
        if idx is None:
            where: Any = slice(start, start + rows)
            count = rows
        else:
            where = np.frombuffer(idx, dtype="<i4") + start
            count = len(where)
        present[where] = True
        if numeric:
            values = np.frombuffer(data, dtype="<f8" if kind == "f8" else "<i8")
            out[where] = values
            if ints is not None:
                ints[where] = values
        else:
            positions = (range(where.start, where.stop) if isinstance(where, slice)
                         else where.tolist())
            run_dir = os.path.dirname(path)
            for pos, value in zip(positions, checked_values(path, kind, data, count)):
                out[pos] = value if plain else as_ref(value, run_dir)  # media: a MediaRef
    dense = bool(present.all())
    if numeric:
        return (ints if ints is not None and (dense or plain) else out), present
    if plain:
        return out, present
    logged = [v for v in out[present] if v is not None]
    if logged and all(type(v) in (int, float) for v in logged):
        try:
            return np.array([np.nan if v is None else v for v in out], dtype="f8"), present
        except OverflowError:  # an int beyond float64 (JSON ints have no bound): kept as is
            pass
    if dense and logged and len(logged) == n and all(type(v) is bool for v in logged):
        return out.astype(bool), present
    return out, present


def stored_columns(reader: RunReader, keys: list[str] | None = None, plain: bool = False
                   ) -> tuple[Any, dict[str, tuple[Any, Any]]]:
    """The history as numpy columns, read chunk by chunk as stored (no row dicts).

    ``(steps, {key: (values, logged)})``: each row's ``_step`` (int64), and per
    key (only ``keys`` if given) its values and a bool mask of the rows that
    logged it (``_column``; ``plain`` for an export). Needs numpy.
    """
    import numpy as np

    path = reader.path
    chunks = list(reader.raw_chunks(keys))
    steps = [np.frombuffer(s, dtype="<i8") for s, _ in chunks]
    offsets = np.cumsum([0] + [len(s) for s in steps])
    n = int(offsets[-1])
    kinds: dict[str, set[str]] = {}
    for _, cols in chunks:
        for key, (kind, _, _) in cols.items():
            kinds.setdefault(key, set()).add(kind)
    columns = {key: _column(np, path, chunks, offsets, n, key, key_kinds, plain)
               for key, key_kinds in kinds.items()}
    return (np.concatenate(steps) if steps else np.empty(0, dtype="<i8")), columns


def _frame(run_dir: str, keys: list[str] | None, samples: int | None, x_axis: str) -> Any:
    """Assemble a DataFrame column by column from the stored arrays.

    ``_step`` is each row's stored step (a stored column of that name is not read).
    """
    import numpy as np
    import pandas as pd

    wanted = None if keys is None else list(dict.fromkeys([x_axis, *keys]))
    stored = None if wanted is None else [k for k in wanted if k != STEP_KEY]
    with RunReader(run_dir) as reader:
        steps, found = stored_columns(reader, stored)
    n = len(steps)
    columns: dict[str, Any] = {"_step": steps}
    keep = np.ones(n, dtype=bool)
    for key, (values, present) in found.items():
        columns[key] = values
        if (wanted is not None and key in wanted) or key == x_axis:
            keep &= present
    if wanted is not None and any(k not in columns for k in wanted):
        keep[:] = False
    frame = pd.DataFrame(columns)
    if wanted is not None:
        frame = frame[[k for k in wanted if k in frame.columns]]
    if not keep.all():
        frame = frame[keep]
    frame = frame.reset_index(drop=True)
    if samples is not None and len(frame) > samples:
        frame = frame.iloc[_sample_positions(len(frame), samples)].reset_index(drop=True)
    return frame


class Api:
    """Read the runs stored under ``dir`` (default ``MPBACKEND_DIR``, ``<WANDB_DIR>/mpruns``
    or ``./mpruns``).

    wandb's arguments are accepted: ``overrides`` (``{"project": ..., "entity": ...}``:
    the project a bare run id is looked for in first), ``timeout`` and ``api_key``
    (nothing is fetched over a network, so neither has an effect). A dict given as
    the first argument is taken as ``overrides``, as ``wandb.Api({...})`` passes it.
    """

    def __init__(self, dir: str | dict[str, Any] | None = None,
                 overrides: dict[str, Any] | None = None, timeout: float | None = None,
                 api_key: str | None = None) -> None:
        if isinstance(dir, dict):
            overrides, dir = dir, None
        if overrides is not None and not isinstance(overrides, dict):
            raise TypeError(f"overrides must be a dict, not {type(overrides).__name__}")
        self.settings: dict[str, Any] = {"entity": None, "project": None, **(overrides or {})}
        self.timeout = timeout
        self.dir = os.path.abspath(dir or environ.runs_dir() or "mpruns")
        self.errors: dict[str, str] = {}

    def _listdir(self, path: str) -> list[str]:
        """The names in ``path``, sorted; [] (the error kept in ``errors``) if unreadable."""
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            self.errors[path] = f"cannot list {path}: {exc}"
            return []

    def _run_dirs(self, project: str | None) -> Iterator[str]:
        if not os.path.isdir(self.dir):
            return
        projects = [project] if project is not None else self._listdir(self.dir)
        for name in projects:
            pdir = os.path.join(self.dir, name)
            if not os.path.isdir(pdir):
                continue
            for run_id in self._listdir(pdir):
                run_dir = os.path.join(pdir, run_id)
                if os.path.isfile(os.path.join(run_dir, DB_NAME)):
                    yield run_dir

    def runs(self, project: str | None = None, filters: dict[str, Any] | None = None,
             order: str | None = "-created_at", per_page: int = 50,
             include_sweeps: bool = False, lazy: bool = True) -> list[ApiRun]:
        """The runs (of ``project``: ``"project"`` or ``"entity/project"``; every
        project if None) that match ``filters``, sorted by ``order``. ``per_page``,
        ``include_sweeps`` and ``lazy`` are wandb's paging options, accepted.

        ``order`` is a field (``created_at``, ``summary.loss``, ``config.lr``)
        with ``-`` for descending. A run whose database cannot be read (missing,
        damaged, or refused by the reader's rules: see ``store.reader``) is left
        out and its error kept in ``self.errors`` (run directory -> message), so
        one bad run never hides the others.
        """
        if project is not None:
            project = _project_of(project)
        found = []
        self.errors = {}
        for run_dir in self._run_dirs(project):
            try:
                run = ApiRun(run_dir)
            except StoreError as exc:
                self.errors[run_dir] = str(exc)
                continue
            except Exception as exc:  # a reader bug: still list the other runs
                self.errors[run_dir] = (f"cannot read the run in {run_dir}: unexpected "
                                        f"{type(exc).__name__}: {exc}")
                continue
            if filters and not _match(run._document(), filters):
                continue
            found.append(run)
        if order:
            field = order.lstrip("+-")
            present = [r for r in found if _lookup(r._document(), field) is not _MISSING]
            absent = [r for r in found if _lookup(r._document(), field) is _MISSING]
            try:
                present.sort(key=lambda r: _lookup(r._document(), field),
                             reverse=order.startswith("-"))
            except TypeError:
                present.sort(key=lambda r: str(_lookup(r._document(), field)),
                             reverse=order.startswith("-"))
            found = present + absent
        return found

    def run(self, path: str = "") -> ApiRun:
        """A run by wandb's paths: ``entity/project/id``, ``entity/project/runs/id``,
        ``entity/project:id``, ``project/id``, ``project:id``, or the id alone (looked
        for in ``overrides["project"]`` first, then in every project).

        NoSuchRun (a KeyError and a ValueError) names the path if there is no
        such run; ValueError for a path of none of these shapes.
        """
        project, run_id = _run_path(path)
        if project is None and self.settings.get("project"):
            project_dir = os.path.join(self.dir, str(self.settings["project"]), run_id)
            if os.path.isfile(os.path.join(project_dir, DB_NAME)):
                return ApiRun(project_dir)
        for run_dir in self._run_dirs(project):
            if os.path.basename(run_dir) == run_id:
                return ApiRun(run_dir)
        raise NoSuchRun(f"no run {path!r} under {self.dir}")

    def sweep(self, path: str) -> ApiSweep:
        """A sweep by ``project/id`` (``entity/project/id``, or the id alone)."""
        from ..sweeps import store

        parts = [p for p in path.split("/") if p]
        if not parts:
            raise ValueError(f"a sweep path is [entity/]project/id, not {path!r}")
        project = parts[-2] if len(parts) >= 2 else store.project_of(self.dir, parts[-1])
        if project is None:
            raise NoSuchRun(f"no sweep {path!r} under {self.dir}")
        try:
            doc = store.load(self.dir, project, parts[-1])
        except StoreError as exc:
            raise NoSuchRun(str(exc)) from None
        return ApiSweep(self, project, doc)

    def artifact(self, name: str, type: str | None = None) -> Any:
        """An artifact version: ``"project/name:alias"`` (``entity/`` accepted in front;
        ``name:v3``, ``name:latest``); NoSuchArtifact if there is none."""
        project = self._default_project()
        artifact = _artifact(self.dir, name, project)
        if type is not None and artifact.type != type:
            raise ValueError(f"artifact {name!r} is of type {artifact.type!r}, not {type!r}")
        return artifact

    def artifact_versions(self, type_name: str, name: str, per_page: int = 50) -> list[Any]:
        """Every version of the artifact ``[project/]name``, oldest first."""
        from ..artifacts import registry
        from ..artifacts.artifact import from_manifest

        project, collection, _ = registry.parse(name, self._default_project())
        project_dir = os.path.join(self.dir, check_name("project", project))
        found = [from_manifest(m, project_dir, project)
                 for m in registry.versions(project_dir, collection)]
        return [a for a in found if type_name is None or a.type == type_name]

    artifacts = artifact_versions

    def artifact_collections(self, project_name: str, type_name: str | None = None
                             ) -> list[str]:
        """The artifact names of a project (of ``type_name``, if given)."""
        from ..artifacts import registry

        project_dir = os.path.join(self.dir, check_name("project", _project_of(project_name)))
        names = registry.collections(project_dir)
        if type_name is None:
            return names
        return [n for n in names if registry.resolve(project_dir, n, "latest")["type"]
                == type_name]

    def _default_project(self) -> str:
        return str(self.settings.get("project") or "") or "uncategorized"

    def project(self, name: str, entity: str | None = None) -> ApiProject:
        """A project by name (``"project"`` or ``"entity/project"``)."""
        return ApiProject(self, _project_of(name))

    def projects(self, entity: str | None = None, per_page: int = 200) -> list[ApiProject]:
        """Every project under ``dir`` that holds a run."""
        names = self._listdir(self.dir) if os.path.isdir(self.dir) else []
        return [ApiProject(self, n) for n in names
                if any(True for _ in self._run_dirs(n))]


def _artifact(store_dir: str, label: str, default_project: str) -> Any:
    """The version ``[entity/][project/]name[:alias]`` stored under ``store_dir``."""
    from ..artifacts import registry
    from ..artifacts.artifact import from_manifest

    project, name, alias = registry.parse(label, default_project)
    project_dir = os.path.join(store_dir, check_name("project", project))
    return from_manifest(registry.resolve(project_dir, name, alias), project_dir, project)


class ApiSweep:
    """A sweep: its configuration, its trials (parameters, state, metric value) and
    their runs."""

    def __init__(self, api: Api, project: str, doc: dict[str, Any]) -> None:
        self._api = api
        self.project = project
        self.id: str = doc["id"]
        self.config: dict[str, Any] = doc["config"]

    @property
    def trials(self) -> list[dict[str, Any]]:
        from ..sweeps import store

        return store.trials(self._api.dir, self.project, self.id)

    @property
    def runs(self) -> list[ApiRun]:
        """The trials' runs that are stored, in trial order."""
        found = []
        for trial in self.trials:
            try:
                found.append(self._api.run(f"{self.project}/{trial['run_id']}"))
            except NoSuchRun:
                continue
        return found

    def best_run(self, order: str | None = None) -> ApiRun | None:
        """The run of the finished trial with the best metric value (by the
        config's goal), or None."""
        goal = (self.config.get("metric") or {}).get("goal", "minimize")
        scored = [t for t in self.trials if isinstance(t.get("value"), (int, float))]
        if not scored:
            return None
        best = (min if goal == "minimize" else max)(scored, key=lambda t: t["value"])
        return self._api.run(f"{self.project}/{best['run_id']}")

    def __repr__(self) -> str:
        return f"<ApiSweep {self.project}/{self.id} ({len(self.trials)} trials)>"


class ApiProject:
    """A project: its name, and its runs."""

    def __init__(self, api: Api, name: str) -> None:
        self._api = api
        self.name = name

    def runs(self, filters: dict[str, Any] | None = None,
             order: str | None = "-created_at") -> list[ApiRun]:
        return self._api.runs(self.name, filters=filters, order=order)

    def __repr__(self) -> str:
        return f"<ApiProject {self.name}>"


def _project_of(path: str) -> str:
    """The project of ``"project"`` or ``"entity/project"`` (the entity is not checked)."""
    if not isinstance(path, str) or not path.strip("/ "):
        raise ValueError(f"a project path must be 'project' or 'entity/project', not {path!r}")
    parts = path.strip("/ ").split("/")
    if len(parts) > 2:
        raise ValueError(f"a project path must be 'project' or 'entity/project', not {path!r}")
    return parts[-1].strip()


def _run_path(path: str) -> tuple[str | None, str]:
    """``(project or None, run id)`` of a wandb run path (see ``Api.run``)."""
    if not isinstance(path, str):
        raise TypeError(f"a run path must be a str, not {type(path).__name__}")
    text = path.replace("/runs/", "/").strip("/ ")
    parts = [p.strip() for p in text.split("/")]
    project: str | None = None
    if len(parts) == 3:
        project, run_id = parts[1], parts[2]
    elif len(parts) == 2:
        if ":" in parts[1]:
            project, run_id = parts[1].split(":", 1)
        else:
            project, run_id = parts
    elif len(parts) == 1 and parts[0]:
        project, run_id = parts[0].split(":", 1) if ":" in parts[0] else (None, parts[0])
    else:
        raise ValueError(f"invalid run path {path!r}: use 'entity/project/run_id', "
                         "'project/run_id' or the run id")
    if not run_id or project == "":
        raise ValueError(f"invalid run path {path!r}")
    return project, run_id
