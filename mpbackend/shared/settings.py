"""Settings: every knob of the user side and the service in one picklable object.

A ``Settings`` is built in the user process (``mpbackend.Settings(...)``, the
``settings=`` argument of ``setup()``/``init()``, and ``MPBACKEND_*`` environment
variables) and handed to the service process when it starts, so both sides read
the same values.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from . import environ

log = logging.getLogger("mpbackend")

START_METHODS = ("spawn", "fork", "forkserver")
FIELDS = ("start_method", "dir", "start_timeout", "request_timeout", "exit_timeout",
          "buffer_bytes", "buffer_policy", "send_interval", "batch_records", "commit_interval",
          "watchdog_interval", "max_array_size", "max_restarts", "system_interval", "quiet")
_FROM_ENV: Any = object()  # a default read from the environment when the Settings is made
BUFFER_POLICIES = ("block", "drop")

# wandb 0.31's settings (the fields of its ``wandb.Settings``) that mean something
# here, and which of ours each sets. ``_name`` is accepted for ``x_name``, as wandb does.
WANDB_MEANING = {
    "silent": "quiet", "x_disable_stats": "system_interval",
    "x_stats_sampling_interval": "system_interval", "init_timeout": "start_timeout",
    "x_service_wait": "start_timeout", "finish_timeout": "exit_timeout",
    "root_dir": "dir",
}
# The run's own settings in wandb's Settings: init() takes each where its own
# argument is not given (``Settings.run``), before the environment.
WANDB_RUN_FIELDS = {
    "project": "project", "entity": "entity", "run_name": "name", "run_id": "id",
    "run_notes": "notes", "run_tags": "tags", "run_group": "group",
    "run_job_type": "job_type", "mode": "mode", "resume": "resume", "reinit": "reinit",
    "save_code": "save_code", "allow_val_change": "allow_val_change",
    "anonymous": "anonymous", "sync_tensorboard": "sync_tensorboard",
    "fork_from": "fork_from", "resume_from": "resume_from",
}
# Every other field of wandb 0.31's Settings: accepted and ignored (each with one
# debug line), since it concerns wandb's server, console capture or files.
WANDB_IGNORED = frozenset("""
allow_media_symlink allow_offline_artifacts api_key azure_account_url_to_access_key
app_url_override base_url code_dir config_paths console console_multipart
console_chunk_max_bytes console_chunk_max_seconds capture_loggers credentials_file
disable_code disable_git disable_git_fork_point disable_job_creation docker email
organization force git_commit git_remote git_remote_url git_root heartbeat_seconds host
http_proxy https_proxy identity_token_file ignore_globs finish_timeout_raises
insecure_disable_ssl job_name job_source label_disable launch launch_config_path
login_timeout notebook_name program program_abspath program_relpath relogin resumed
sagemaker_disable settings_system stop_fn max_end_of_run_history_metrics
max_end_of_run_summary_metrics show_colors show_emoji show_errors show_info show_warnings
stop_on_fatal_error strict summary_timeout summary_warnings sweep_id sweep_param_path
symlink table_raise_on_max_row_limit_exceeded use_dot_wandb username x_cli_only_mode
x_disable_meta x_disable_viewer x_disable_machine_info x_executable x_extra_http_headers
x_file_stream_max_bytes x_file_stream_max_line_bytes x_file_stream_transmit_interval
x_file_stream_no_gzip x_file_stream_retry_max x_file_stream_retry_wait_min_seconds
x_file_stream_retry_wait_max_seconds x_file_stream_timeout_seconds x_file_transfer_retry_max
x_file_transfer_retry_wait_min_seconds x_file_transfer_retry_wait_max_seconds
x_file_transfer_timeout_seconds x_files_dir x_flow_control_custom x_flow_control_disabled
x_graphql_retry_max x_graphql_retry_wait_min_seconds x_graphql_retry_wait_max_seconds
x_graphql_timeout_seconds x_history_value_encoding x_internal_check_process x_jupyter_name
x_jupyter_path x_jupyter_root x_label x_live_policy_rate_limit x_live_policy_wait_time
x_log_level x_network_buffer x_primary x_proxies x_runqueue_item_id x_save_requirements
x_server_side_derived_summary x_service_transport x_skip_transaction_log x_start_time
x_stats_pid x_stats_neuron_monitor_config_path x_stats_dcgm_exporter
x_stats_open_metrics_endpoints x_stats_open_metrics_filters x_stats_open_metrics_http_headers
x_stats_disk_paths x_stats_cpu_count x_stats_cpu_logical_count x_stats_gpu_count
x_stats_gpu_type x_stats_gpu_device_ids x_stats_buffer_size
x_stats_coreweave_metadata_base_url x_stats_coreweave_metadata_endpoint
x_stats_track_process_tree x_stats_no_cgroup x_stats_self_usage x_sync x_sync_dir_suffix
x_transaction_log_flush_interval x_update_finish_state x_require_legacy_service
x_show_operation_stats
""".split())


def _wandb_settings(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """wandb's settings among ``given``: (ours they set, the run's own settings).

    TypeError for a name that neither wandb 0.31 nor mpbackend has (a typo should
    not pass silently); the ones without meaning here get one debug line each.
    """
    ours: dict[str, Any] = {}
    run: dict[str, Any] = {}
    for given_name, value in given.items():
        name = "x" + given_name if given_name.startswith("_") else given_name
        if name in WANDB_RUN_FIELDS:
            if value is not None:
                run[WANDB_RUN_FIELDS[name]] = value
        elif name in WANDB_MEANING:
            if value is None:
                continue
            field = WANDB_MEANING[name]
            if name == "x_disable_stats":
                if value:
                    ours[field] = None
            elif name == "root_dir":
                ours[field] = os.path.join(os.fspath(value), "mpruns")
            elif name == "silent":
                ours[field] = bool(value)
            else:
                ours[field] = value
        elif name in WANDB_IGNORED:
            log.debug("mpbackend: the wandb setting %s=%r has no meaning here; ignored",
                      given_name, value)
        else:
            raise TypeError(f"Settings() got an unknown setting {given_name!r} (neither "
                            "mpbackend nor wandb 0.31 has it)")
    return ours, run


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, not {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, not {value!r}")


def _number(name: str, value: Any) -> float:
    """``value`` if it is a real number (not a bool), else TypeError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {value!r}")
    return value


def _int(name: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < least:
        raise ValueError(f"{name} must be an int >= {least}, not {value!r}")


def _env_start_method() -> str:
    """``MPBACKEND_START_METHOD`` (checked like the argument), else ``WANDB_START_METHOD``
    where it names a method this has (wandb's ``thread`` does not), else spawn."""
    ours = os.environ.get("MPBACKEND_START_METHOD", "").strip()
    if ours:
        return ours
    theirs = environ.value("START_METHOD")
    return theirs if theirs in START_METHODS else Settings.start_method


def _env_interval(name: str, default: float) -> float | None:
    """A number of seconds from the environment; empty, ``0`` or ``off`` mean off (None)."""
    text = os.environ.get(name)
    if text is None:
        return default
    text = text.strip().lower()
    if text in ("", "0", "off", "none", "false", "no"):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds (or 0 for off), not {text!r}"
                         ) from None


class Settings:
    """What a user may tune; wandb's settings are accepted too (see ``__init__``).

    A plain class rather than a dataclass: the service process imports this module
    as it starts, and the dataclasses module (with inspect) costs it ~10 ms.

    Attributes:
        start_method: how the service process starts: ``spawn`` (default),
            ``fork`` or ``forkserver``; environment ``MPBACKEND_START_METHOD`` (or
            ``WANDB_START_METHOD``).
        dir: where runs are stored (``<dir>/<project>/<run id>/``); environment
            ``MPBACKEND_DIR`` (or ``<WANDB_DIR>/mpruns``), default ``./mpruns``.
        start_timeout: seconds to wait for the service's ready reply.
        request_timeout: default seconds a blocking request (init, flush, finish)
            waits for its reply.
        exit_timeout: seconds the atexit path may take in all: finishing open
            runs, stopping the service and joining it.
        buffer_bytes: bound of the user-side buffer of serialised records that
            have not reached the queue yet.
        buffer_policy: what ``log()`` does when that buffer is full: ``block``
            (wait for the service, nothing lost) or ``drop`` (count and warn).
        send_interval: the longest the sender thread lets records gather before
            it writes a batch to the queue. It waits as little as 5 ms while
            batches come large, and doubles its wait up to this while they come
            small; a full batch or a request goes at once.
        batch_records: records per batch that make the sender write at once, and
            the most a batch holds (the service's memory is bounded by a few
            batches in its inbox).
        commit_interval: the longest the service lets history gather before it
            commits a transaction to the store (sooner, after 8,192 records).
        watchdog_interval: seconds between the service's checks that the user
            process is alive where it cannot wait on a pidfd (Linux < 5.3);
            with one, the death is seen at once.
        max_array_size: the most elements an array or list logged as a value
            may have; it is stored as a list. Larger ones raise ValueError.
        max_restarts: how many times the manager starts a new service when its
            service dies while runs are open (the runs resume in it).
        system_interval: seconds between the service's samples of system metrics
            (``mpbackend.service.system``); ``0`` or None turns sampling off. Environment
            ``MPBACKEND_SYSTEM_INTERVAL``, default 2.
        quiet: print no summary when a run ends (``mpbackend.read.end_summary``); the
            environment ``MPBACKEND_SILENT=1`` does the same.
    """

    # The defaults (an instance has its own values; these three come from the
    # environment when it is made).
    start_method: str = "spawn"
    dir: str = "mpruns"
    system_interval: float | None = 2.0
    start_timeout: float = 60.0
    request_timeout: float = 30.0
    exit_timeout: float = 30.0
    buffer_bytes: int = 8 * 1024 * 1024
    buffer_policy: str = "block"
    send_interval: float = 0.05
    batch_records: int = 2000
    commit_interval: float = 0.25
    watchdog_interval: float = 0.1
    max_array_size: int = 10_000
    max_restarts: int = 3
    quiet: bool = False

    def __init__(self, start_method: str | None = None, dir: str | None = None,
                 start_timeout: float = start_timeout, request_timeout: float = request_timeout,
                 exit_timeout: float = exit_timeout, buffer_bytes: int = buffer_bytes,
                 buffer_policy: str = buffer_policy, send_interval: float = send_interval,
                 batch_records: int = batch_records, commit_interval: float = commit_interval,
                 watchdog_interval: float = watchdog_interval,
                 max_array_size: int = max_array_size, max_restarts: int = max_restarts,
                 system_interval: Any = _FROM_ENV, quiet: bool = quiet,
                 **wandb_settings: Any) -> None:
        """``start_method``, ``dir`` and ``system_interval`` left out come from the
        environment (see above); every value is checked here: TypeError for a
        wrong type, ValueError for a wrong value.

        wandb's settings are accepted too (``silent``, ``_disable_stats``,
        ``root_dir``, ``init_timeout``, ``project``, ``run_name``, ``mode``, ...: see
        ``WANDB_MEANING`` and ``WANDB_RUN_FIELDS``); the run's own ones are kept in
        ``run`` for init(), and those without meaning here are ignored.
        """
        ours, self.run = _wandb_settings(wandb_settings)
        if "quiet" in ours:
            quiet = ours["quiet"]
        if "start_timeout" in ours:
            start_timeout = ours["start_timeout"]
        if "exit_timeout" in ours:
            exit_timeout = ours["exit_timeout"]
        if dir is None and "dir" in ours:
            dir = ours["dir"]
        if "system_interval" in ours and system_interval is _FROM_ENV:
            system_interval = ours["system_interval"]
        if start_method == "thread":  # wandb's; this has no thread mode
            log.debug("mpbackend: start_method='thread' has no meaning here; spawn is used")
            start_method = None
        self.start_method = (start_method if start_method is not None
                             else _env_start_method())
        self.dir = dir if dir is not None else (environ.runs_dir() or Settings.dir)
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self.exit_timeout = exit_timeout
        self.buffer_bytes = buffer_bytes
        self.buffer_policy = buffer_policy
        self.send_interval = send_interval
        self.batch_records = batch_records
        self.commit_interval = commit_interval
        self.watchdog_interval = watchdog_interval
        self.max_array_size = max_array_size
        self.max_restarts = max_restarts
        self.system_interval = (_env_interval("MPBACKEND_SYSTEM_INTERVAL", 2.0)
                                if system_interval is _FROM_ENV else system_interval)
        self.quiet = quiet
        self._check()

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name (the run's own wandb settings, ``run``, left out)."""
        return {name: getattr(self, name) for name in FIELDS}

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()) + ")"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def _check(self) -> None:
        """Every field as its docstring says: TypeError for a wrong type, ValueError for a
        wrong value, raised where the Settings is made (not later, in the service)."""
        _choice("start_method", self.start_method, START_METHODS)
        _choice("buffer_policy", self.buffer_policy, BUFFER_POLICIES)
        if isinstance(self.dir, os.PathLike):
            self.dir = os.fspath(self.dir)
        if not isinstance(self.dir, str):
            raise TypeError(f"dir must be a str or a path, not {type(self.dir).__name__}")
        if not self.dir:
            raise ValueError("dir must not be empty")
        for name in ("start_timeout", "request_timeout", "exit_timeout", "send_interval",
                     "commit_interval", "watchdog_interval"):
            value = _number(name, getattr(self, name))
            if not value > 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.system_interval is not None:
            interval = _number("system_interval", self.system_interval)
            if not interval >= 0 or not math.isfinite(interval):
                raise ValueError(f"system_interval must be a number of seconds >= 0 (0 or "
                                 f"None: off), not {interval!r}")
        _int("buffer_bytes", self.buffer_bytes, 1024)
        _int("batch_records", self.batch_records, 1)
        _int("max_array_size", self.max_array_size, 1)
        _int("max_restarts", self.max_restarts, 0)
        if not isinstance(self.quiet, bool):
            raise TypeError(f"quiet must be True or False, not {self.quiet!r}")

    @classmethod
    def coerce(cls, value: Settings | dict[str, Any] | None, **overrides: Any) -> Settings:
        """A Settings from ``None``, a Settings or a dict; ``overrides`` win where not None."""
        run: dict[str, Any] = {}
        if value is None:
            base: dict[str, Any] = {}
        elif isinstance(value, Settings):
            base = value.as_dict()
            run = dict(value.run)
        elif isinstance(value, dict):
            base = dict(value)
        else:
            raise TypeError(f"settings must be a mpbackend.Settings or a dict, not {type(value)}")
        base.update({k: v for k, v in overrides.items() if v is not None})
        made = cls(**base)
        made.run = {**run, **made.run}
        return made
