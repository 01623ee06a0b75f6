"""init(): open a run, in the user process, and make it ``mpbackend.run``.

    init(project, id, config, ...) --checks at the call (names, modes, resume, tags)-->
        setup() (the service, once per process) --> Manager.inform_init(spec) [5]
        <-- [6] the reply: id, dir, first step, resumed config --> Run(...) --> make_current

``spec`` is everything the service needs to open the run's store: its id,
project, directory, config, resume rule, tags and the like, and the owner's pid
and host. ``mode="disabled"`` makes a DisabledRun and starts nothing.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from typing import Any

from ..shared import environ
from ..shared.jupyter import in_notebook
from ..shared.paths import check_name, make_dirs, safe_name
from ..shared.settings import Settings
from .config import Config
from .run import DisabledRun, Run, make_current
from .setup import setup
from .values import check_text

MODES = ("online", "offline", "disabled")
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    """Eight random characters of [0-9a-z] (the modulo bias is below one in six million)."""
    n = int.from_bytes(os.urandom(8), "little") % 36**8
    out = []
    for _ in range(8):
        n, digit = divmod(n, 36)
        out.append(_ID_ALPHABET[digit])
    return "".join(out)


def default_project() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", os.path.splitext(os.path.basename(path))[0])
        if stem and safe_name(stem):
            return stem
    return "uncategorized"


def init(project: str | None = None, name: str | None = None, id: str | None = None,
         config: Any = None, dir: str | None = None, mode: str | None = None,
         resume: bool | str | None = None, reinit: bool | str | None = None,
         tags: list[str] | None = None, notes: str | None = None, group: str | None = None,
         job_type: str | None = None,
         settings: Settings | dict[str, Any] | None = None) -> Run:
    """Start a run (after starting the service if needed) and make it ``mpbackend.run``.

    ``resume``: ``"allow"``/``True`` continues run ``id`` if it exists, ``"must"``
    requires it to, ``"never"`` refuses an existing one. ``reinit``: with a run
    already active in this process, ``False`` returns it, ``True`` finishes it
    first (the default in Jupyter), ``"create_new"`` opens another alongside it.
    ``mode="disabled"`` returns a run that writes nothing.
    """
    import mpbackend

    mode = mode or environ.value("MODE") or "online"
    mode = "offline" if mode == "dryrun" else mode  # wandb's old name for offline
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if reinit is None:
        reinit = in_notebook()
    if reinit not in (True, False, "finish_previous", "return_previous", "create_new"):
        raise ValueError(f"reinit must be a bool, 'finish_previous', 'return_previous' or "
                         f"'create_new', not {reinit!r}")
    current = mpbackend.run
    if current is not None and current.state == "running" and reinit != "create_new":
        if reinit in (False, "return_previous"):
            return current
        current.finish()
    settings = Settings.coerce(settings, dir=dir)
    # What the call leaves out, the environment gives (MPBACKEND_<X>, then WANDB_<X>).
    project = project if project is not None else environ.value("PROJECT")
    project = check_name("project", project if project is not None else default_project())
    run_id = id if id is not None else environ.value("RUN_ID")
    run_id = check_name("run id", run_id if run_id is not None else new_id())
    name = name if name is not None else environ.value("NAME")
    notes = notes if notes is not None else environ.value("NOTES")
    group = group if group is not None else environ.value("RUN_GROUP")
    job_type = job_type if job_type is not None else environ.value("JOB_TYPE")
    if tags is None and environ.value("TAGS") is not None:
        tags = [t.strip() for t in (environ.value("TAGS") or "").split(",") if t.strip()]
    if resume is None and environ.value("RESUME") is not None:
        resume = (environ.value("RESUME") or "").lower()
        if resume not in ("allow", "must", "never", "auto"):
            raise ValueError(f"WANDB_RESUME / MPBACKEND_RESUME must be allow, must, never or "
                             f"auto, not {resume!r}")
    if resume not in (None, False, True, "allow", "must", "never", "auto"):
        raise ValueError(f"resume must be 'allow', 'must', 'never' or a bool, not {resume!r}")
    if tags is not None and (isinstance(tags, str) or
                             not all(isinstance(t, str) for t in tags)):
        raise TypeError(f"tags must be a list of str, not {tags!r}")
    for what, text in (("name", name), ("notes", notes), ("group", group),
                       ("job_type", job_type), *(("a tag", t) for t in tags or ())):
        if text is not None:
            if not isinstance(text, str):
                raise TypeError(f"{what} must be a str or None, not {text!r}")
            check_text(text, f"init(): {what}")
    name, notes, group, job_type = (None if t is None else str.__str__(t)
                                    for t in (name, notes, group, job_type))
    run_dir = os.path.join(os.path.abspath(settings.dir), project, run_id)
    spec: dict[str, Any] = {
        "id": run_id, "project": project, "name": name, "run_dir": run_dir,
        "config": {}, "resume": resume or None, "tags": list(tags or []),
        "notes": notes, "group": group, "job_type": job_type, "pid": os.getpid(),
        "host": socket.gethostname(), "start_time": time.time(),
    }
    staged = Config(None)
    staged.update(config)
    spec["config"] = staged.as_dict()
    if mode == "disabled":
        run: Run = DisabledRun(spec, settings)
    else:
        created = not os.path.isdir(run_dir)
        try:
            make_dirs(run_dir)
        except OSError as exc:
            raise PermissionError(f"cannot create the run directory {run_dir}: {exc}") from exc
        if not os.access(run_dir, os.W_OK):
            raise PermissionError(f"the run directory {run_dir} is not writable")
        setup_ = setup(settings)
        try:
            reply = setup_.manager.inform_init(spec)
        except BaseException:
            if created and not os.listdir(run_dir):
                os.rmdir(run_dir)
            raise
        manager = setup_.manager
        run = Run(spec, reply, settings, manager, manager.interface)
        manager.runs[run.id] = run
    make_current(run)
    return run
