r"""System metrics: what the machine and the training processes did while a run was open.

    service process
    ---------------------------------------------------------------------------------
    sampler thread  --every system_interval s: Sampler.sample()--> samples (a deque)
      (woken at once when a run opens)                                  |
    StreamMux main thread, at every commit: SystemMonitor.write() <-----+
        --> rows per open run (_runtime, cumulative I/O) --> RunWriter.write_system --> run.db
    StreamMux._finish_stream: SystemMonitor.closing() takes one last sample, writes the
        run's rows, then the run's store closes

One ``SystemMonitor`` per service, made by StreamMux when ``Settings.system_interval``
is a positive number. Sampling (psutil reads /proc, a few milliseconds) happens
off the main thread, so it never delays the records; only the thread that owns a
run's SQLite connection (StreamMux's main thread) writes the samples, each batch
in a transaction of its own. A run gets a sample when it opens and one when it
ends, so even a run shorter than the interval has two. Nothing here raises into
the service: a failed figure is left out of its sample, a failed sample is logged
at DEBUG, a failed write is reported once per run (as a commit failure is) and
retried with the next batch.

The training process is the user process the service watches *together with all
its descendants* (DataLoader workers, Pool workers, anything they start), except
the service process and its own children. A process that exits while it is read
is skipped quietly.

Stored keys (every figure a float; a key is missing from a sample that could not
read it):

==============================  ========================================================
``system/cpu_percent``          machine CPU use over the last interval, 0-100 (all cores)
``system/memory_percent``       machine memory in use, %
``system/memory_used_mb``       machine memory in use, MB (10^6 bytes)
``system/memory_available_mb``  machine memory available, MB
``system/disk_read_mb``         disk bytes read by the machine since the run (or its
``system/disk_write_mb``        resumption) started, MB: *cumulative*
``system/disk_read_mb_s``       disk read / write rate over the last interval, MB/s
``system/disk_write_mb_s``
``system/net_sent_mb``          network bytes sent / received since the run started, MB:
``system/net_recv_mb``          *cumulative*
``system/net_sent_mb_s``        network send / receive rate over the last interval, MB/s
``system/net_recv_mb_s``
``proc/cpu_percent``            CPU of the training process and its descendants, summed
                                (100 = one core busy), over the last interval
``proc/rss_mb``                 their resident memory, summed, MB (shared pages count in
                                each process that maps them)
``proc/threads``                their threads
``proc/processes``              how many processes (the training process included)
``gpu/<i>/utilization``         GPU ``i`` busy, % (only with nvidia-ml-py and a GPU)
``gpu/<i>/memory_used_mb``      GPU memory in use, MB
``gpu/<i>/memory_percent``      GPU memory in use, %
``gpu/<i>/temperature_c``       GPU temperature, degrees Celsius
``gpu/<i>/power_w``             GPU power draw, W
==============================  ========================================================

Each stored row also has ``_timestamp`` (seconds since the epoch) and ``_runtime``
(seconds since the run started, on the same clock as its history rows).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from ..shared.errors import StoreError

# psutil is imported by the sampler thread (``_import_psutil``), after the service
# has said it is ready, so that its import does not delay the service's start.
psutil: Any = None
_GONE: tuple[type[BaseException], ...] = ()

log = logging.getLogger("mpbackend.service")

MB = 1e6
# Machine-wide byte counters, turned into MB/s between samples: key, psutil field.
_DISK_FIELDS = (("system/disk_read_mb", "read_bytes"), ("system/disk_write_mb", "write_bytes"))
_NET_FIELDS = (("system/net_sent_mb", "bytes_sent"), ("system/net_recv_mb", "bytes_recv"))
# Samples waiting for the main thread; past this the oldest are dropped.
MAX_QUEUED_SAMPLES = 1000
# Samples per run kept in memory while the store cannot be written; older ones are dropped.
MAX_UNWRITTEN_SAMPLES = 10_000
# How long a run that ends at once waits for its start sample to be taken.
START_WAIT = 1.0


def _import_psutil() -> None:
    global psutil, _GONE
    import psutil as module

    psutil = module
    _GONE = (module.NoSuchProcess, module.ZombieProcess, module.AccessDenied)


class Sample:
    """One reading: when, the figures, and the raw I/O counters the cumulative keys need."""

    __slots__ = ("ts", "values", "counters")

    def __init__(self, ts: float, values: dict[str, float],
                 counters: dict[str, float]) -> None:
        self.ts = ts
        self.values = values
        self.counters = counters  # key -> bytes since boot, e.g. "system/disk_read_mb"


class _Gpus:
    """The GPUs NVML sees; ``open()`` is None without nvidia-ml-py, NVML or a GPU."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self.nvml = nvml
        self.handles = handles

    @classmethod
    def open(cls) -> _Gpus | None:
        try:
            with warnings.catch_warnings():  # old pynvml wheels warn when imported
                warnings.simplefilter("ignore")
                import pynvml
        except Exception:
            return None
        try:
            pynvml.nvmlInit()
        except Exception:  # no driver, no library: no GPU figures
            return None
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                       for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:
            handles = []
        if not handles:
            cls._shutdown(pynvml)
            return None
        return cls(pynvml, handles)

    @staticmethod
    def _shutdown(nvml: Any) -> None:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass

    def read(self, out: dict[str, float]) -> None:
        nvml = self.nvml
        for i, handle in enumerate(self.handles):
            prefix = f"gpu/{i}/"
            try:
                out[prefix + "utilization"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:
                pass
            try:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                out[prefix + "memory_used_mb"] = memory.used / MB
                if memory.total:
                    out[prefix + "memory_percent"] = 100.0 * memory.used / memory.total
            except Exception:
                pass
            try:
                out[prefix + "temperature_c"] = float(
                    nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            except Exception:
                pass
            try:
                out[prefix + "power_w"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            except Exception:
                pass

    def close(self) -> None:
        self._shutdown(self.nvml)


_UNSET: Any = object()


class Sampler:
    """Reads the machine's figures and those of the training process tree.

    Thread-safe: the sampler thread and the main thread (a run's last sample)
    may both call ``sample()``. CPU percentages are taken over the time since
    the previous call, so the constructor takes a first reading.
    """

    def __init__(self, user_pid: int, exclude_pid: int) -> None:
        if psutil is None:
            _import_psutil()
        self.user_pid = user_pid
        self.exclude_pid = exclude_pid
        self._lock = threading.Lock()
        self._procs: dict[int, psutil.Process] = {}
        self._cpu: dict[int, float] = {}  # pid -> its CPU seconds at the last reading
        self._last: float | None = None  # time.monotonic() of the last reading
        self._counters: dict[str, float] = {}
        self._gpus: _Gpus | None = _UNSET
        with self._lock:
            now = time.monotonic()
            self._read_tree(now)
            self._read_machine(now, {}, {})
            self._last = now

    def sample(self) -> Sample:
        """One reading of every figure that can be read now."""
        with self._lock:
            ts = time.time()
            now = time.monotonic()
            values: dict[str, float] = {}
            counters: dict[str, float] = {}
            self._read_machine(now, values, counters)
            tree = self._read_tree(now)
            if tree is not None:
                values.update(tree)
            if self._gpus is _UNSET:
                self._gpus = _Gpus.open()
            if self._gpus is not None:
                self._gpus.read(values)
            self._last = now
            return Sample(ts, values, counters)

    def close(self) -> None:
        with self._lock:
            if self._gpus not in (None, _UNSET):
                self._gpus.close()
            self._gpus = None

    # -- the machine ---------------------------------------------------------

    def _read_machine(self, now: float, out: dict[str, float],
                      counters: dict[str, float]) -> None:
        try:
            cpu = psutil.cpu_percent(interval=None)  # since this process's previous call
            if self._last is not None:
                out["system/cpu_percent"] = float(cpu)
        except Exception:
            pass
        try:
            memory = psutil.virtual_memory()
            out["system/memory_percent"] = float(memory.percent)
            out["system/memory_used_mb"] = (memory.total - memory.available) / MB
            out["system/memory_available_mb"] = memory.available / MB
        except Exception:
            pass
        raw: dict[str, float] = {}
        for read, fields in ((psutil.disk_io_counters, _DISK_FIELDS),
                             (psutil.net_io_counters, _NET_FIELDS)):
            try:
                found = read()
            except Exception:
                continue
            if found is not None:
                for key, field in fields:
                    raw[key] = float(getattr(found, field))
        elapsed = None if self._last is None else now - self._last
        for key, value in raw.items():
            before = self._counters.get(key)
            if elapsed and elapsed > 0 and before is not None and value >= before:
                out[key + "_s"] = (value - before) / MB / elapsed
        self._counters = raw
        counters.update(raw)

    # -- the training process and its descendants -------------------------------

    def _tree(self) -> list[psutil.Process] | None:
        """The user process and its descendants, less the service's subtree; None if gone."""
        try:
            root = self._procs.get(self.user_pid)
            if root is None or not root.is_running():
                root = psutil.Process(self.user_pid)
            if root.status() == psutil.STATUS_ZOMBIE:
                return None
            kids = root.children(recursive=True)
        except _GONE:
            return None
        parents: dict[int, int] = {}
        for proc in kids:
            try:
                parents[proc.pid] = proc.ppid()
            except _GONE:
                parents[proc.pid] = -1
        excluded = {self.exclude_pid}
        changed = True
        while changed:
            changed = False
            for pid, ppid in parents.items():
                if pid not in excluded and ppid in excluded:
                    excluded.add(pid)
                    changed = True
        known = self._procs
        procs = [root]
        for proc in kids:
            if proc.pid in excluded or parents[proc.pid] == -1:
                continue
            cached = known.get(proc.pid)
            procs.append(cached if cached is not None and cached == proc else proc)
        return procs

    def _read_tree(self, now: float) -> dict[str, float] | None:
        procs = self._tree()
        if procs is None:
            self._procs, self._cpu = {}, {}
            return None
        elapsed = None if self._last is None else now - self._last
        cpu_now: dict[int, float] = {}
        busy = 0.0
        rss = 0
        threads = 0
        count = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    memory = proc.memory_info()
                    nthreads = proc.num_threads()
                    created = proc.create_time()
            except _GONE:
                continue
            except Exception:  # an unreadable /proc entry: leave this process out
                continue
            seconds = times.user + times.system
            cpu_now[proc.pid] = seconds
            before = self._cpu.get(proc.pid)
            if before is not None and self._procs.get(proc.pid) == proc:
                busy += max(seconds - before, 0.0)
            elif self._last is not None and created >= time.time() - (now - self._last):
                busy += seconds  # started since the last reading: all its CPU is new
            rss += memory.rss
            threads += nthreads
            count += 1
        self._procs = {proc.pid: proc for proc in procs if proc.pid in cpu_now}
        self._cpu = cpu_now
        if count == 0:
            return None
        out = {"proc/rss_mb": rss / MB, "proc/threads": float(threads),
               "proc/processes": float(count)}
        if elapsed and elapsed > 0:
            out["proc/cpu_percent"] = 100.0 * busy / elapsed
        return out


class _RunState:
    """What the monitor keeps for one open run."""

    __slots__ = ("internal", "opened_at", "asked", "base", "unwritten")

    def __init__(self, internal: Any, opened_at: float, asked: int) -> None:
        self.internal = internal
        self.opened_at = opened_at
        self.asked = asked  # the number of the start sample asked for it
        self.base: dict[str, float] | None = None  # I/O counters of its first sample
        self.unwritten: list[tuple[float, float, dict[str, float]]] = []

    def row(self, sample: Sample) -> tuple[float, float, dict[str, float]]:
        internal = self.internal
        if self.base is None:
            self.base = dict(sample.counters)
        values = dict(sample.values)
        for key, value in sample.counters.items():
            base = self.base.get(key)
            if base is not None and value >= base:
                values[key] = (value - base) / MB
        runtime = internal.runtime_before + sample.ts - internal.start_time
        return sample.ts, runtime, dict(sorted(values.items()))


class SystemMonitor:
    """The service's sampler thread and the samples it hands to each open run.

    ``opened``, ``write`` and ``closing`` are called from StreamMux's main
    thread only (the thread that owns the runs' stores); none of them raises.
    """

    def __init__(self, user_pid: int, interval: float,
                 notice: Callable[[str, str], None] | None = None) -> None:
        self.user_pid = user_pid
        self.interval = float(interval)
        self._notice = notice
        self._sampler: Sampler | None = None
        self._samples: collections.deque[Sample] = collections.deque(maxlen=MAX_QUEUED_SAMPLES)
        self._runs: dict[str, _RunState] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Start samples asked for (by opened) and taken (by the thread), counted.
        self._taken = threading.Condition()
        self._asked = 0
        self._served = 0
        self._thread: threading.Thread | None = None
        self._failed = False  # the sampler could not start: no samples at all

    @classmethod
    def create(cls, user_pid: int, settings: Any,
               notice: Callable[[str, str], None] | None = None) -> SystemMonitor | None:
        """A monitor for ``settings.system_interval``, or None when sampling is off."""
        interval = getattr(settings, "system_interval", None)
        if not interval or interval <= 0:
            return None
        return cls(user_pid, interval, notice)

    def start(self) -> None:
        """Start the sampler thread; it makes its Sampler (psutil) before sampling."""
        self._thread = threading.Thread(target=self._loop, name="mpbackend-system",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sampler is not None:
            try:
                self._sampler.close()
            except Exception:
                log.debug("system metrics: closing the sampler failed", exc_info=True)

    def _loop(self) -> None:
        """Sampler thread: a sample every ``interval`` while a run is open, or when woken."""
        try:
            self._sampler = sampler = Sampler(self.user_pid, os.getpid())
        except Exception:
            log.debug("system metrics: the sampler could not start", exc_info=True)
            with self._taken:
                self._failed = True
                self._taken.notify_all()
            return
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not self._runs:
                continue
            asked = self._asked
            try:
                self._samples.append(sampler.sample())
            except Exception:
                log.debug("system metrics: a sample failed", exc_info=True)
            with self._taken:
                self._served = asked
                self._taken.notify_all()

    # -- main thread --------------------------------------------------------

    def opened(self, internal: Any) -> None:
        """A run opened: take a sample for it now (in the sampler thread)."""
        if self._thread is None or self._failed:
            return
        with self._taken:
            self._asked += 1
            self._runs[internal.id] = _RunState(internal, time.time(), self._asked)
        self._wake.set()

    def write(self) -> None:
        """Hand the samples taken so far to the open runs and write them to their stores."""
        if not self._samples:
            return
        samples = []
        while self._samples:
            samples.append(self._samples.popleft())
        for state in list(self._runs.values()):
            for sample in samples:
                if sample.ts >= state.opened_at:
                    state.unwritten.append(state.row(sample))
            self._flush(state)

    def closing(self, internal: Any) -> None:
        """A run ends: one last sample, then every row it has left goes to its store."""
        state = self._runs.get(internal.id)
        if state is None or state.internal is not internal:
            return
        try:
            with self._taken:  # a run shorter than a sample: wait for its start sample
                self._taken.wait_for(lambda: self._served >= state.asked or self._failed
                                     or self._thread is None or not self._thread.is_alive(),
                                     timeout=START_WAIT)
            self.write()
            if self._sampler is not None:
                state.unwritten.append(state.row(self._sampler.sample()))
        except Exception:
            log.debug("system metrics: the last sample of run %s failed", internal.id,
                      exc_info=True)
        self._flush(state)
        del self._runs[internal.id]

    def _flush(self, state: _RunState) -> None:
        if not state.unwritten:
            return
        try:
            state.internal.writer.write_system(state.unwritten)
        except StoreError as exc:
            del state.unwritten[:-MAX_UNWRITTEN_SAMPLES]
            if self._notice is not None:
                self._notice("store:" + state.internal.id, f"run {state.internal.id}: {exc}")
            return
        except Exception:
            log.debug("system metrics: writing run %s failed", state.internal.id, exc_info=True)
            state.unwritten.clear()
            return
        state.unwritten.clear()
