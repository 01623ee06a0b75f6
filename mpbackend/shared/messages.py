"""The messages that cross the two queues; the numbers [1]..[e] are the manager's.

The manager's conversation with the service has numbered steps, each a
request and its reply: [1]/[2] start the process and wait until it is ready,
[3]/[4] ensure it is up (and of our version), [5]/[6] open a run, [7] a logged
row (no reply) and [8] the flush barrier, [9]/[a] finish a run, [b]/[c] stop
every run at exit, [d]/[e] poll until the service has drained. They are the
steps of the wandb "service" design this project re-implements on queues, and
the table at the end of this docstring maps each to its message.

rec_q (user process and its children -> service) carries *batches*. A batch is
the pickle of ``(pid, worker, records, seq, token)``: the sending process, its
DataLoader worker id or None, a list of records, and the batch's number under
the user process's ``token`` (kept for a replay after a service restart; -1 and
None from a child). A record is serialised in the caller's thread by
``mpbackend.user.interface.dumps`` (it is then ``bytes`` in the list), except a
``log()`` row of builtin numbers, which travels as the tuple itself, pickled
with its batch. A record is a plain tuple whose first item is its opcode:

    (HISTORY, stream, data, step, commit, timestamp)  [7] a log() call
    (HISTORY_FLOATS, ...the same...)                  [7] one whose values are all
                                                      floats (stored without a
                                                      type check)
    (HISTORY_ANY, ...the same...)                     [7] one whose values are not
                                                      all builtin scalars
    (CONFIG, stream, data)                            config update
    (SUMMARY, stream, data, deleted keys)             summary set by the user
    (DEFINE_METRIC, stream, name, definition)         define_metric()
    (RUN_META, stream, {field: value})                run.name = ... (and notes, tags,
                                                      group, job_type) set after init();
                                                      {"preempting": True}
    (ALERT, stream, {title, text, level, ...})        run.alert()
    (ARTIFACT, stream, client id, spec)               run.log_artifact(): the service
                                                      stores the next version
    (USE_ARTIFACT, stream, {project, name, version})  run.use_artifact(): lineage
    (HISTORY_MEDIA, ...as HISTORY...)                 [7] a log() call whose values hold
                                                      media (``Media``, below): the
                                                      service writes their files first
    (REQUEST, uuid, message)                          a request: one of the
                                                      NamedTuples below

Plain tuples keep the hot path cheap (a NamedTuple costs four times as much to
pickle); every record kind that is not a request is fire-and-forget.

rsp_q (service -> the user process's router) carries pickled ``Ready`` once,
then ``Response`` (one per request, matched by uuid) and ``Notice`` (a warning
for the user). Only standard types travel on rsp_q, so the router never needs
to import user code.

Both queues are read with ``loads``, which resolves no global but the message
types below and the builtin ``str`` (a ``str`` subclass key goes as ``str(text)``):
what crosses a queue is data, so reading it runs no one's code, and a record
that is anything else is refused where it is read instead of being executed.

    step         request            reply value
    [1]/[2]      (process start)    Ready(pid, version)
    [3]/[4]      EnsureUp           {"pid", "version"}
    [5]/[6]      InformInit         {"id", "dir", "step", ...} of the new stream
    [7]/[8]      HISTORY / Flush    {"step"} once all before it is in the store
    -            GetSummary         {"summary", "step"} as of all sent before it
    [9]/[a]      InformFinish       {"state", "summary", "step"} the final state
    [b]/[c]      ManagerStop        {"stopped": [stream ids]}
    [d]/[e]      ManagerPoll        {"streams": number not yet drained}
"""

from __future__ import annotations

import io
import pickle
from typing import Any, NamedTuple

HISTORY = 0
CONFIG = 1
SUMMARY = 2
REQUEST = 3
HISTORY_ANY = 4
DEFINE_METRIC = 5
HISTORY_FLOATS = 6
RUN_META = 7
ALERT = 8
HISTORY_MEDIA = 9
ARTIFACT = 10
USE_ARTIFACT = 11
# The run attributes a user may set after init() (RUN_META), and their stored column.
META_FIELDS = {"name": "name", "notes": "notes", "tags": "tags", "group": "run_group",
               "job_type": "job_type"}


class EnsureUp(NamedTuple):
    """[3] Is the service alive and of our version?"""

    version: str


class InformInit(NamedTuple):
    """[5] Add a stream (a run) to StreamMux; ``spec`` describes the run."""

    spec: dict[str, Any]


class Flush(NamedTuple):
    """[8] Barrier: reply once everything sent before it is committed to the store."""

    stream: str


class ArtifactWait(NamedTuple):
    """The version stored for the artifact a log_artifact() sent as ``client_id``
    (sent after it, so answered once it is stored)."""

    stream: str
    client_id: str


class GetSummary(NamedTuple):
    """The run's summary and step, after everything sent before this request."""

    stream: str


class InformFinish(NamedTuple):
    """[9] Finish a stream: commit, record its final state, remove it."""

    stream: str
    state: str
    exit_code: int | None
    dropped: int = 0  # records of this run the user side dropped


class ManagerStop(NamedTuple):
    """[b] Stop every stream still open (the process is exiting)."""

    state: str = "finished"


class ManagerPoll(NamedTuple):
    """[d] How many streams have not been drained yet?"""


class Ready(NamedTuple):
    """[2] The service is up: its pid, version, and the ids of the runs it resumed."""

    pid: int
    version: str
    resumed: tuple[str, ...] = ()


class Response(NamedTuple):
    """The reply to the request with ``uuid``: a value, or an error (type name, text,
    the service's traceback text; see ``errors.error_reply``)."""

    uuid: str
    value: Any = None
    error: tuple[str, str, str] | None = None


class Committed(NamedTuple):
    """Every record of the owner's batches up to ``seq`` is in the store (replay ack)."""

    seq: int


class Media(NamedTuple):
    """A media value as it crosses rec_q (made by ``mpbackend.media`` at the call).

    ``kind`` names the type (``"image"``, ``"table"``, ``"histogram"``, ...);
    ``meta`` is its plain metadata (caption, shape, columns); ``data`` is what
    the service writes as its file: encoded file bytes, raw pixels (``meta``
    gives their shape), a table's rows (whose cells may be ``Media`` too), or
    None for a type stored inline. Only plain data: a numpy array goes as its
    bytes, so the service's ``loads`` resolves no global but this type.
    """

    kind: str
    meta: dict[str, Any]
    data: Any = None


class Notice(NamedTuple):
    """Something the user should hear about that no request asked for."""

    level: str
    text: str


# What ``loads`` resolves: the request and reply types, and ``str`` (see ``loads``).
_GLOBALS: dict[tuple[str, str], type] = {("builtins", "str"): str}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refused {module}.{name}: only plain data and "
                                         "mpbackend's messages cross the queues")
        return found


def loads(data: bytes) -> Any:
    """Unpickle what crossed a queue: plain data and the NamedTuples above, nothing else.

    Raises ``pickle.UnpicklingError`` for a pickle that names any other global
    (a user's class, ``os.system``), before any of it is called.
    """
    return _DataUnpickler(io.BytesIO(data)).load()


_GLOBALS.update({(__name__, cls.__name__): cls for cls in (
    EnsureUp, InformInit, Flush, GetSummary, ArtifactWait, InformFinish, ManagerStop,
    ManagerPoll, Ready, Response, Committed, Notice, Media)})
