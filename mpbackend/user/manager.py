"""Manager: owns this process's service; every numbered message ([1]..[e]) goes through it.

    setup() --> Manager --[1]/[2] Service.start()---------------> service process
                        --[3]/[4] ensure_up()    (EnsureUp)    --> StreamMux
    init()  -->         --[5]/[6] inform_init()  (InformInit)  --> StreamMux adds an Internal
    log()   --> Run --> Interface.publish        [7]           --> Internal
    flush() -->         --[8]     Interface.communicate(Flush) --> Internal commits
    finish()-->         --[9]/[a] inform_finish()(InformFinish)--> StreamMux removes it
    atexit  -->         --[b]/[c] stop()         (ManagerStop) --> every stream ends
                        --[d]/[e] poll()         (ManagerPoll) --> until none is left,
                                  then join the process (kill it if it will not go)

The Manager registers an atexit hook that finishes the runs still open (as
``finished``, ``failed`` after an uncaught exception, ``interrupted`` after
KeyboardInterrupt, exit code 130, or SIGTERM, exit code 143) and stops the
service, all within ``Settings.exit_timeout``. SIGTERM is handled only where the
user has installed no handler of their own: it raises SystemExit(143) in the
main thread, so the script unwinds and exits as it would on Ctrl-C.
In a forked child the hook does nothing: only the process that started the
service stops it.

If the service dies while runs are open, the Manager starts a new one on the
same rec_q (up to ``Settings.max_restarts`` times): it resumes the runs and
replays this process's batches that the dead service had not reported stored
(``_restart``), so the training loop never sees the death and loses no row.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing.process
import multiprocessing.util
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from ..shared import messages as m
from ..shared.errors import ServiceError
from ..shared.jupyter import kernel_shutting_down
from ..shared.settings import Settings
from ..shared.version import __version__
from .interface import Interface, defer_sigterm
from .launcher import Service
from .router import Router

if TYPE_CHECKING:
    from .run import Run

log = logging.getLogger("mpbackend")
# How long a terminated child process takes to write its buffered records.
CHILD_TERM_DRAIN = 2.0


class Manager:
    """Starts the service, carries the manager's requests, stops it at exit."""

    def __init__(self, settings: Settings, service: Service | None = None) -> None:
        """Start the service, or take one already launched (``Service.launch``)."""
        self.settings = settings
        self.pid = os.getpid()
        self.runs: weakref.WeakValueDictionary[str, Run] = weakref.WeakValueDictionary()
        self.exit_state = "finished"
        self.exit_code: int | None = None
        self._stopped = False
        self._restarts = 0
        self._restarted = threading.Event()  # clear while a new service is being started
        self._restarted.set()
        # A new service can die before the thread that started it is done (it dies
        # replaying): the next restart then waits for that one (_restart_serial),
        # and _restarted is set only once no restart is left under way.
        self._restart_lock = threading.Lock()
        self._restart_serial = threading.Lock()
        self._restarting = 0
        # What the dead services were applying (``_after_death``): batches to apply
        # one record at a time, deaths per record, and records to skip.
        self._isolate: set[int] = set()
        self._deaths: dict[tuple[int, int], int] = {}
        self._skip: set[tuple[int, int]] = set()
        if service is None:
            service = Service(settings)
            service.launch()
        self.service = service
        service.wait_ready()
        self.router = Router(self.service.rsp_q, self.service, self._on_broken,
                             self._on_committed)
        self.interface = Interface(self.service.rec_q, self.router, settings,
                                   service_pid=self.service.pid)
        self.router.start()
        self.ensure_up()
        atexit.register(self._atexit)
        # A multiprocessing child (a spawn or fork Process, a Pool worker) runs its
        # exit handler before any atexit hook (a forked one runs none); that handler
        # terminates daemonic children, the service among them, after the
        # finalizers of priority >= 0. In the main process it runs after our atexit
        # hook, so it is a second chance for a hook that a Ctrl-C cut short.
        multiprocessing.util.Finalize(None, self._atexit, exitpriority=100)
        _managers.add(self)
        _hook_excepthook()
        _hook_sigterm()

    def _on_committed(self, seq: int) -> None:
        """The service stored this process's batches up to ``seq``: no replay needed."""
        self.interface.ack(seq)

    def _on_broken(self, reason: str) -> None:
        """The Router saw the service die: restart it for the open runs, or give up.

        While a new service starts, records go on into rec_q (its spare read end
        here keeps it open), from this process and from its children alike.
        """
        if not self.owner:
            return
        if not self._stopped and self.runs and self._restarts < self.settings.max_restarts:
            with self._restart_lock:
                self._restarts += 1
                self._restarting += 1
                self._restarted.clear()
            threading.Thread(target=self._restart, args=(reason, self.interface.dropped),
                             name="mpbackend-restart", daemon=True).start()
            return
        self._give_up(reason)
        if not self._stopped:
            log.warning("mpbackend: %s; what is logged from now on is not stored", reason)

    def _give_up(self, reason: str) -> None:
        """No service will read rec_q again: writers stop, later records are dropped."""
        self.interface.set_broken(reason)
        self.service.rec_q.close_spare()

    def _restart(self, reason: str, dropped_before: int) -> None:
        """Start a new service on the same rec_q and resume every open run in it.

        The new service re-opens the runs (``resume="allow"``) before it reads
        its first record, then reads what was written to rec_q meanwhile, so a
        record logged while no service ran is stored, whichever process logged
        it. This process's batches that the dead service had not reported
        committed are replayed first (the new service skips what the store
        already holds); a child's records the dead service had read but not
        committed are lost with it.
        """
        with self._restart_serial:
            self._restart_one(reason, dropped_before)

    def _restart_one(self, reason: str, dropped_before: int) -> None:
        try:
            from .interface import dumps

            specs = tuple(dumps({**run._spec, "resume": "allow",
                                 "config": run.config.as_dict()})
                          for run in list(self.runs.values()))
            self._after_death(self.service)
            while True:
                # A new service that dies before it is ready (killed too, say) costs one
                # of max_restarts; the next is started from the same state.
                service = Service(self.settings)
                try:
                    ready = service.start(self.service.rec_q, specs, self.interface.unacked(),
                                          tuple(self._isolate), tuple(self._skip))
                    break
                except ServiceError as exc:
                    if self._stopped or self._restarts >= self.settings.max_restarts:
                        raise
                    self._restarts += 1
                    log.debug("mpbackend: a new service died before it was ready (%s); "
                              "starting another", exc)
            router = Router(service.rsp_q, service, self._on_broken, self._on_committed)
            router.start()
            self.service, self.router = service, router
            self.interface.reattach(router, service.pid)
            lost = self.interface.dropped - dropped_before
            log.warning("mpbackend: %s; started a new service (pid %d) and resumed run(s) %s; "
                        "%d record(s) logged in between were lost", reason, service.pid,
                        ", ".join(ready.resumed) or "-", lost)
        except Exception as exc:
            self._give_up(reason)
            log.warning("mpbackend: %s, and a new service could not be started (%s); what is "
                        "logged from now on is not stored", reason, exc)
        finally:
            with self._restart_lock:
                self._restarting -= 1
                if self._restarting == 0:
                    self._restarted.set()

    def _after_death(self, dead: Service) -> None:
        """Note what the dead service was applying, so the next is not given it whole.

        A batch it died in is applied by the next service one record at a time
        (each named in its ``Progress`` first); a record that a service died in
        twice is skipped, with an error stored with its run and a warning. A
        service killed from outside dies in some batch too: that batch costs a
        slower replay, and only a second death on the very same record a loss.
        """
        if dead.progress is None:
            return
        seq, index = dead.progress.get()
        if seq < 0:
            return
        self._isolate.add(seq)
        if index >= 0:
            deaths = self._deaths[(seq, index)] = self._deaths.get((seq, index), 0) + 1
            if deaths >= 2:
                self._skip.add((seq, index))

    @property
    def owner(self) -> bool:
        """True in the process that started the service (not in a forked child)."""
        return os.getpid() == self.pid

    @property
    def alive(self) -> bool:
        return not self._stopped and self.router.error is None and self.service.alive()

    def communicate(self, message: Any, timeout: float | None = None) -> Any:
        """A request to the service; waits (within ``timeout``) for a restart under way.

        A request that the dying service took with it is asked again of the new
        one, except init and ensure_up, which the caller decides about.
        """
        wait = self.settings.start_timeout if timeout is None else timeout
        while True:
            if not self._restarted.is_set():
                self._restarted.wait(wait)
            restarts = self._restarts
            try:
                return self.interface.communicate(message, timeout)
            except ServiceError:
                # The Router clears _restarted (in _on_broken) before it fails the
                # futures: a restart under way, or one since the call, means ask again
                # (each death costs one of max_restarts, so this ends).
                if (isinstance(message, (m.InformInit, m.EnsureUp))
                        or (self._restarted.is_set() and self._restarts == restarts)):
                    raise

    def ensure_up(self) -> dict[str, Any]:
        """[3]/[4] The service answers and runs our version."""
        reply = self.communicate(m.EnsureUp(__version__), self.settings.start_timeout)
        if reply["version"] != __version__:
            raise ServiceError(f"the service runs mpbackend {reply['version']}, "
                               f"this process {__version__}")
        return reply

    def inform_init(self, spec: dict[str, Any]) -> dict[str, Any]:
        """[5]/[6] Open a stream for a run; the reply has its id, dir and first step."""
        return self.communicate(m.InformInit(spec))

    def flush(self, stream: str, timeout: float | None = None) -> dict[str, Any]:
        """[8] Returns once everything logged to ``stream`` before it is in the store."""
        return self.communicate(m.Flush(stream), timeout)

    def inform_finish(self, stream: str, state: str, exit_code: int | None,
                      timeout: float | None = None, dropped: int = 0) -> dict[str, Any]:
        """[9]/[a] End a stream; the reply has the final state and summary.

        ``dropped`` counts the run's records this process dropped (buffer full
        under ``buffer_policy="drop"``); it is stored with the run.
        """
        return self.communicate(m.InformFinish(stream, state, exit_code, dropped), timeout)

    def finish_runs(self, state: str, deadline: float, exit_code: int | None = None) -> None:
        """Finish every open run of this process as ``state`` before ``deadline``."""
        for run in list(self.runs.values()):
            left = deadline - time.monotonic()
            if left <= 0 or self.router.error is not None:
                break
            run._finish_at_exit(state, exit_code, max(left, 0.01))  # never raises

    def stop(self, timeout: float | None = None, state: str = "finished") -> None:
        """[b]..[e] Stop every stream, poll until drained, join; never longer than ``timeout``.

        Runs still open end as ``state`` (in the store, by the service, and here).
        """
        if self._stopped or not self.owner:
            return
        timeout = self.settings.exit_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._stopped = True
        for run in list(self.runs.values()):
            run._ended(state if self.router.error is None else "crashed")
        try:
            if self.router.error is None:
                self.communicate(m.ManagerStop(state), max(deadline - time.monotonic(), 0.01))
                while time.monotonic() < deadline:
                    left = deadline - time.monotonic()
                    if self.communicate(m.ManagerPoll(), max(left, 0.01))["streams"] == 0:
                        break
                    time.sleep(0.01)
        except Exception as exc:  # whatever it was, the service is still joined or killed
            log.warning("mpbackend: stopping the service: %s", exc)
        finally:
            if not self.service.join(deadline - time.monotonic()):
                log.warning("mpbackend: the service did not exit within %g s; killing it",
                            timeout)
                self.service.kill()
            self.service.rec_q.close_spare()
            self.interface.close(timeout=0.5)
            self.router.join(timeout=1.0)

    def _atexit(self) -> None:
        """Finish the open runs and stop the service, within ``exit_timeout``.

        It is registered twice: with ``atexit`` and as a multiprocessing
        finalizer. A Ctrl-C that abandons the first call (a second press just
        after the first) is followed by multiprocessing's own exit function,
        which runs the finalizers before it SIGTERMs daemonic children: this runs
        again, and the service ends every open run as ``exit_state`` and exits,
        instead of being SIGTERMed and waited for (its 10 s grace). Inside, SIGINT
        is noted, not raised (``_sigint_held``): a burst of presses cannot cut
        both calls short, and the hook is bounded by ``exit_timeout`` anyway.
        """
        if not self.owner or self._stopped:
            return
        with _sigint_held():  # a burst of Ctrl-C would cut short the second call too
            deadline = time.monotonic() + self.settings.exit_timeout
            self.finish_runs(self.exit_state, deadline, self.exit_code)
            self.stop(max(deadline - time.monotonic(), 0.5), state=self.exit_state)


_managers: weakref.WeakSet[Manager] = weakref.WeakSet()


def _set_exit(state: str, exit_code: int | None) -> None:
    """How this process is ending, for the runs atexit will finish."""
    for manager in list(_managers):
        manager.exit_state = state
        manager.exit_code = exit_code


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT is noted, not raised, inside the block (main thread only; elsewhere no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        log.debug("mpbackend: %d Ctrl-C during the exit hook held back until it was done",
                  len(pressed))


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler's preemption): end like Ctrl-C, runs ``interrupted``.

    A Jupyter kernel that was asked to shut down also gets SIGTERM on its way
    out; its runs end ``finished``, as they would at a normal exit.

    A forked child (a Pool worker that ``Pool.terminate()`` stops) inherited this
    handler but owns no service: its sender thread writes what it logged to the
    pipe (at most CHILD_TERM_DRAIN seconds), then the process dies of SIGTERM as
    it would have without mpbackend (``interface.exit_when_drained``). The handler
    raises nothing (a SystemExit raised inside an at-fork callback or a finalizer
    would be swallowed and leave the worker alive) and waits for nothing (the
    thread it interrupted may hold a lock the sender needs). The child has it
    only once it has records to write, and its sender does the same if the main
    thread never gets to run it (``interface.defer_sigterm``).
    """
    if not any(manager.owner for manager in list(_managers)):
        from .interface import exit_when_drained

        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if not exit_when_drained(CHILD_TERM_DRAIN):
            os.kill(os.getpid(), signal.SIGTERM)
        return  # the sender thread ends the process once its records are written
    if kernel_shutting_down():
        _set_exit("finished", None)
    else:
        _set_exit("interrupted", 128 + signum)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
    raise SystemExit(128 + signum)


def _hook_sigterm() -> None:
    """Handle SIGTERM where the user has not: only the main thread may, and only once."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _after_fork_in_child() -> None:
    """A forked child does not own its parent's service.

    ``multiprocessing`` keeps the processes it started in a module-level set, and
    at exit it terminates and joins the daemonic ones. A child made by a bare
    ``os.fork()`` inherits that set, so without this its exit would SIGTERM the
    parent's service and then wait for it.

    The SIGTERM handler it inherited waits until the child has records to write:
    see ``interface.defer_sigterm``. Until it is reset, SIGTERM was blocked
    (``_before_fork``).
    """
    for manager in list(_managers):
        process = manager.service.process
        if process is not None:
            multiprocessing.process._children.discard(process)  # type: ignore[attr-defined]
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            defer_sigterm(_on_sigterm, CHILD_TERM_DRAIN)
    finally:
        blocked = threading.get_ident() in _fork_blocked
        _fork_blocked.clear()  # the parent's other forking threads are not in this process
        if blocked:  # a SIGTERM that came during the fork is delivered now
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


# Threads that block SIGTERM while they fork (``_before_fork``).
_fork_blocked: set[int] = set()


def _before_fork() -> None:
    """Block SIGTERM in the forking thread while it forks, if the handler is ours.

    A SIGTERM that reaches a new child before Python's own after-fork code has
    run trips the inherited handler, and that code then forgets it (it clears
    what a signal to the parent may have left, bpo-9535): a Pool worker
    terminated as it was being forked outlived terminate(), and the pool's join
    waited for it for ever. Blocked, the signal waits in the kernel, in the child
    until it has the default disposition (``_after_fork_in_child``), in the
    parent until the fork is done.
    """
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        if signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}):
            _fork_blocked.add(threading.get_ident())


def _after_fork_in_parent() -> None:
    me = threading.get_ident()
    if me in _fork_blocked:
        _fork_blocked.discard(me)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def _hook_excepthook() -> None:
    """Record how the script ends (uncaught exception) so atexit marks runs right."""
    if getattr(sys.excepthook, "_mpbackend", False):
        return
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        interrupted = issubclass(kind, KeyboardInterrupt)
        _set_exit("interrupted" if interrupted else "failed",
                  128 + signal.SIGINT if interrupted else 1)
        previous(kind, value, tb)

    excepthook._mpbackend = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook
    _hook_sys_exit()


def _hook_sys_exit() -> None:
    """Record ``sys.exit(n)`` in the main thread, so atexit ends runs with code ``n``.

    A SystemExit never reaches ``sys.excepthook`` and an atexit hook cannot read
    the exit status, so, as wandb does, ``sys.exit`` is wrapped: ``sys.exit(3)``
    ends the open runs ``failed`` with exit code 3, ``sys.exit()`` or ``sys.exit(0)``
    ``finished`` with 0, a message (``sys.exit("bad")``) ``failed`` with 1. A bare
    ``raise SystemExit(3)`` is not seen and ends them ``finished``.
    """
    if getattr(sys.exit, "_mpbackend", False):
        return
    previous = sys.exit

    def exit(status: Any = None) -> NoReturn:
        if threading.current_thread() is threading.main_thread():
            code = (0 if status is None else int(status)
                    if isinstance(status, int) else 1)
            _set_exit("failed" if code else "finished", code)
        previous(status)

    exit._mpbackend = True  # type: ignore[attr-defined]
    exit.__doc__ = previous.__doc__
    sys.exit = exit
