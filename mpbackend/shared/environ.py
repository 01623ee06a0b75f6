"""The environment variables both names answer to: ``MPBACKEND_<X>``, then ``WANDB_<X>``.

    user: init() --project, entity, name, notes, tags, group, job_type, id, resume, mode,
                   config paths, save code-->
    shared: Settings --dir, start_method--> ; read: Api, cli, end summary --dir, silent-->

A wandb script is often configured from outside, by its scheduler or a sweep
agent, through ``WANDB_PROJECT``, ``WANDB_RUN_ID``, ``WANDB_RESUME``,
``WANDB_MODE`` and the like; it must behave the same here with only its import
changed. So every variable mpbackend reads is looked up under both names
(``value``): ``MPBACKEND_<X>`` wins where both are set, an empty value counts
as unset. ``TABLE`` is the list README shows.
"""

from __future__ import annotations

import os

# (the suffix X, what it sets) for every variable read under both names.
TABLE: tuple[tuple[str, str], ...] = (
    ("PROJECT", "init(project=)"),
    ("ENTITY", "init(entity=): recorded with the run (run.entity, Api paths)"),
    ("NAME", "init(name=)"),
    ("NOTES", "init(notes=)"),
    ("TAGS", "init(tags=), comma-separated"),
    ("RUN_GROUP", "init(group=)"),
    ("JOB_TYPE", "init(job_type=)"),
    ("RUN_ID", "init(id=)"),
    ("RESUME", "init(resume=): allow, must, never or auto"),
    ("MODE", "init(mode=): online, offline (also dryrun) or disabled"),
    ("DIR", "where runs are stored: MPBACKEND_DIR is the runs' directory itself, "
            "WANDB_DIR the directory to make it in (<WANDB_DIR>/mpruns)"),
    ("START_METHOD", "Settings(start_method=): spawn, fork or forkserver"),
    ("SILENT", "no end-of-run summary, no termlog lines (1, true, yes)"),
    ("CONFIG_PATHS", "comma-separated JSON (or YAML, with PyYAML) files loaded into the "
                     "config before init(config=)"),
    ("SAVE_CODE", "init(save_code=): copy the script to the run's files (1, true, yes)"),
    ("LOG_MODEL", "transformers' MpbackendCallback: checkpoint (each save) or end (the "
                  "final model) as model artifacts"),
    ("WATCH", "transformers' MpbackendCallback: gradients, parameters or all: watch() "
              "the model"),
    ("ARTIFACT_DIR", "where Artifact.download() puts a version by default "
                     "(<ARTIFACT_DIR>/<name>:v<N>; default ./artifacts)"),
    ("SWEEP_POLL_SECONDS", "how often a sweep agent's hyperband watch reads the trials' "
                           "metric values (default 1)"),
)
TRUE = ("1", "true", "yes", "on")


def value(name: str) -> str | None:
    """``MPBACKEND_<name>`` if set and not empty, else ``WANDB_<name>``, else None."""
    for prefix in ("MPBACKEND_", "WANDB_"):
        found = os.environ.get(prefix + name)
        if found is not None and found.strip():
            return found.strip()
    return None


def flag(name: str) -> bool:
    """The variable as a yes/no: ``1``, ``true``, ``yes`` or ``on`` mean yes."""
    found = value(name)
    return found is not None and found.lower() in TRUE


def runs_dir() -> str | None:
    """Where runs are stored, from the environment: ``MPBACKEND_DIR``, or
    ``<WANDB_DIR>/mpruns`` (wandb's ``WANDB_DIR`` names the directory its own
    ``wandb/`` directory is made in), or None."""
    found = os.environ.get("MPBACKEND_DIR", "").strip()
    if found:
        return found
    parent = os.environ.get("WANDB_DIR", "").strip()
    return os.path.join(parent, "mpruns") if parent else None
