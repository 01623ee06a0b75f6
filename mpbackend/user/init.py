"""init(): open a run, in the user process, and make it ``mpbackend.run``.

    init(project, id, config, ...) --checks at the call (names, modes, resume, tags)-->
        setup() (the service, once per process) --> Manager.inform_init(spec) [5]
        <-- [6] the reply: id, dir, first step, resumed config --> Run(...) --> make_current

``spec`` is everything the service needs to open the run's store: its id,
project, directory, config, resume rule, tags and the like, and the owner's pid
and host. ``mode="disabled"`` makes a DisabledRun and starts nothing.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..shared import environ
from ..shared.errors import UsageError
from ..shared.jupyter import in_notebook
from ..shared.paths import check_name, make_dirs, new_id, safe_name
from ..shared.settings import Settings
from .config import Config
from .run import DisabledRun, Run, make_current
from .setup import setup
from .values import check_text

__all__ = ["init", "new_id"]

MODES = ("online", "offline", "disabled")


def default_project() -> str:
    """The project when none is given, named as wandb names it: the git repository's
    name (its root's directory, found from the working directory), with the
    script's directory below the root added (``repo-sub_dir``); ``uncategorized``
    outside a repository or for a script outside it."""
    root = _git_root(os.getcwd())
    if root is None:
        return "uncategorized"
    name = os.path.basename(root)
    main = sys.modules.get("__main__")
    program = getattr(main, "__file__", None)
    if program:
        where = os.path.dirname(os.path.abspath(program))
        if os.path.commonpath([where, root]) != root:
            return "uncategorized"
        below = os.path.relpath(where, root)
        if below != ".":
            name = f"{name}-{below.replace(os.sep, '_')}"
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).lstrip("._-")[:128]
    return name if name and safe_name(name) else "uncategorized"


def _git_root(start: str) -> str | None:
    """The nearest directory at or above ``start`` that holds ``.git`` (a directory,
    or the file a worktree or submodule has); no git command is run."""
    path = os.path.abspath(start)
    while True:
        if os.path.exists(os.path.join(path, ".git")):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


# Generated run names: adjective-noun-number, the number one more than the runs the
# project holds (as wandb numbers them). The words are this project's own.
ADJECTIVES = ("amber", "brisk", "calm", "daring", "eager", "fancy", "gentle", "hardy",
              "icy", "jolly", "keen", "lively", "mellow", "nimble", "olive", "proud",
              "quiet", "rapid", "silver", "tidy", "upbeat", "vivid", "warm", "young",
              "zesty", "bright", "crisp", "dusty", "frosty", "golden", "hazy", "lucky",
              "misty", "noble", "polar", "rosy", "sunny", "swift", "wild", "woven")
NOUNS = ("river", "meadow", "comet", "forest", "harbor", "island", "lantern", "maple",
         "nebula", "orchard", "pebble", "quartz", "ridge", "summit", "tundra", "valley",
         "willow", "breeze", "canyon", "delta", "ember", "field", "glacier", "horizon",
         "lagoon", "moon", "ocean", "pine", "planet", "rain", "shadow", "sky", "star",
         "storm", "sun", "thunder", "wave", "wind", "dream", "spark")


def generated_name(project_dir: str) -> str:
    """``adjective-noun-N``: N one more than the runs in ``project_dir``."""
    try:
        count = sum(1 for entry in os.scandir(project_dir) if entry.is_dir())
    except OSError:
        count = 0
    pick = int.from_bytes(os.urandom(4), "little")
    return (f"{ADJECTIVES[pick % len(ADJECTIVES)]}-"
            f"{NOUNS[(pick // len(ADJECTIVES)) % len(NOUNS)]}-{count + 1}")


def _config_from(source: Any, what: str) -> dict[str, Any]:
    """``config=`` given as a file path (JSON, or YAML where PyYAML is installed), as
    wandb allows; anything else is returned for Config.update to check."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    path = os.fspath(source)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read the config file {path!r}: {exc}") from None
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise ImportError(f"{what}: reading the YAML config file {path!r} needs PyYAML: "
                              "pip install pyyaml") from None
        data = yaml.safe_load(text) or {}
        # wandb's config-defaults.yaml form: {"key": {"value": v, "desc": ...}}
        if isinstance(data, dict):
            data = {k: v["value"] if isinstance(v, dict) and "value" in v else v
                    for k, v in data.items() if k != "wandb_version"}
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{what}: the config file {path!r} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TypeError(f"{what}: the config file {path!r} does not hold a mapping")
    return data


def _unsupported(what: str, detail: str, settings: Settings) -> None:
    from .everyday import termwarn

    if not settings.quiet:
        termwarn(f"{what} is not supported by mpbackend: {detail}", repeat=False)


def init(entity: str | None = None, project: str | None = None, dir: str | None = None,
         id: str | None = None, name: str | None = None, notes: str | None = None,
         tags: Sequence[str] | None = None, config: Any = None,
         config_exclude_keys: list[str] | None = None,
         config_include_keys: list[str] | None = None, allow_val_change: bool | None = None,
         group: str | None = None, job_type: str | None = None, mode: str | None = None,
         force: bool | None = None, reinit: bool | str | None = None,
         resume: bool | str | None = None, resume_from: str | None = None,
         fork_from: str | None = None, save_code: bool | None = None,
         tensorboard: bool | None = None, sync_tensorboard: bool | None = None,
         monitor_gym: bool | None = None, settings: Settings | dict[str, Any] | None = None,
         anonymous: str | None = None, magic: Any = None) -> Run:
    """Start a run (after starting the service if needed) and make it ``mpbackend.run``.

    wandb 0.31's signature. ``resume``: ``"allow"``/``True`` continues run ``id``
    if it exists, ``"must"`` requires it to, ``"never"`` refuses an existing one.
    ``reinit``: with a run already active in this process, ``False`` returns it,
    ``True`` finishes it first (the default in Jupyter), ``"create_new"`` opens
    another alongside it. ``mode="disabled"`` returns a run that writes nothing.

    ``entity`` is recorded (``run.entity``, and the Api's ``"entity/project"``
    paths); ``save_code`` copies the script to the run's files;
    ``config_exclude_keys`` / ``config_include_keys`` filter ``config``.
    ``resume_from="<id>?_step=N"`` resumes run ``<id>`` (it is not rewound to N).
    Accepted and without effect here (README lists why): ``force``,
    ``anonymous``, ``allow_val_change`` (as in wandb 0.31, a later change of a
    config key still needs ``config.update(..., allow_val_change=True)``),
    ``magic``; ``sync_tensorboard``/``tensorboard``, ``monitor_gym`` and
    ``fork_from`` warn that they are not supported.
    """
    import mpbackend

    settings = Settings.coerce(settings, dir=dir)
    given = settings.run

    def pick(value: Any, field: str, env: str | None = None) -> Any:
        """The argument, else the Settings' run field, else the environment."""
        if value is not None:
            return value
        if given.get(field) is not None:
            return given[field]
        return environ.value(env) if env else None

    entity = pick(entity, "entity", "ENTITY")
    mode = pick(mode, "mode", "MODE") or "online"
    mode = {"dryrun": "offline", "shared": "online"}.get(mode, mode)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    reinit = pick(reinit, "reinit")
    if reinit is None or reinit == "default":
        reinit = in_notebook()
    if reinit not in (True, False, "finish_previous", "return_previous", "create_new"):
        raise ValueError(f"reinit must be a bool, 'default', 'finish_previous', "
                         f"'return_previous' or 'create_new', not {reinit!r}")
    current = mpbackend.run
    if current is not None and current.state == "running" and reinit != "create_new":
        if reinit in (False, "return_previous"):
            return current
        current.finish()
    if config_exclude_keys is not None and config_include_keys is not None:
        raise UsageError("init(): config_exclude_keys and config_include_keys cannot both "
                         "be given")
    if sync_tensorboard or tensorboard:
        _unsupported("sync_tensorboard", "TensorBoard event files are not read; log with "
                     "mpbackend.log() instead", settings)
    if monitor_gym:
        _unsupported("monitor_gym", "gym videos are not recorded", settings)
    fork_from = pick(fork_from, "fork_from")
    if fork_from is not None:
        _unsupported("fork_from", f"a new run is started, without the history of "
                     f"{fork_from!r}", settings)
    resume_from = pick(resume_from, "resume_from")
    if resume_from is not None:
        if not isinstance(resume_from, str) or "?_step=" not in resume_from:
            raise ValueError(f"resume_from must be '<run id>?_step=<step>', not "
                             f"{resume_from!r}")
        if id is None:
            id = resume_from.split("?_step=", 1)[0]
        resume = resume if resume is not None else "must"
    # What the call leaves out, the environment gives (MPBACKEND_<X>, then WANDB_<X>).
    project = pick(project, "project", "PROJECT")
    project = check_name("project", project if project is not None else default_project())
    run_id = pick(id, "id", "RUN_ID")
    run_id = check_name("run id", run_id if run_id is not None else new_id())
    name = pick(name, "name", "NAME")
    notes = pick(notes, "notes", "NOTES")
    group = pick(group, "group", "RUN_GROUP")
    job_type = pick(job_type, "job_type", "JOB_TYPE")
    tags = pick(tags, "tags")
    if tags is None and environ.value("TAGS") is not None:
        tags = [t.strip() for t in (environ.value("TAGS") or "").split(",") if t.strip()]
    resume = pick(resume, "resume")
    save_code = pick(save_code, "save_code")
    if save_code is None:
        save_code = environ.flag("SAVE_CODE")
    if entity is not None and not isinstance(entity, str):
        raise TypeError(f"entity must be a str or None, not {entity!r}")
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
    for what, text in (("entity", entity), ("name", name), ("notes", notes), ("group", group),
                       ("job_type", job_type), *(("a tag", t) for t in tags or ())):
        if text is not None:
            if not isinstance(text, str):
                raise TypeError(f"{what} must be a str or None, not {text!r}")
            check_text(text, f"init(): {what}")
    name, notes, group, job_type = (None if t is None else str.__str__(t)
                                    for t in (name, notes, group, job_type))
    project_dir = os.path.join(os.path.abspath(settings.dir), project)
    run_dir = os.path.join(project_dir, run_id)
    if name is None and not os.path.isdir(run_dir):  # a resumed run keeps its stored name
        name = generated_name(project_dir)
    spec: dict[str, Any] = {
        "id": run_id, "project": project, "name": name, "run_dir": run_dir,
        "entity": entity,
        "config": {}, "resume": resume or None, "tags": list(tags or []),
        "notes": notes, "group": group, "job_type": job_type, "pid": os.getpid(),
        "host": socket.gethostname(), "start_time": time.time(),
    }
    staged = Config(None)
    for path in (environ.value("CONFIG_PATHS") or "").split(","):
        if path.strip():  # WANDB_CONFIG_PATHS: files whose keys come first
            staged.update(_config_from(path.strip(), "WANDB_CONFIG_PATHS"))
    staged.update(_config_from(config, "init(config=...)"), allow_val_change=True)
    sweep_id = environ.value("SWEEP_ID")
    params_path = environ.value("SWEEP_PARAM_PATH")
    if sweep_id and params_path:  # a sweep's trial (mpbackend.sweeps): its parameters win
        staged.update(_config_from(params_path, "the sweep's parameters"),
                      allow_val_change=True)
        spec["sweep"] = sweep_id
    items = staged.as_dict()
    if config_exclude_keys is not None:
        items = {k: v for k, v in items.items() if k not in set(config_exclude_keys)}
    if config_include_keys is not None:
        items = {k: v for k, v in items.items() if k in set(config_include_keys)}
    spec["config"] = items
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
        if save_code:
            from .runfiles import save_program

            save_program(run)
    make_current(run)
    return run
