"""The harness's workloads beyond the main one, one run per fresh process (bench/harness.py).

    python bench/peers/workloads.py WORKLOAD LIBRARY N OUTDIR SECONDS [REF]

WORKLOAD is one of

* runs50:      50 runs open at once in this process, N steps each of 10 floats, logged
               round-robin (step s of run 0..49, then step s + 1);
* keys100:     one run, N steps, each a dict of 100 floats;
* threads8:    one run, 8 threads started together, each logs N / 8 steps of 10 values;
* dataloader:  mpbackend only (torch is not in the peers' venv): a PyTorch DataLoader
               with 4 workers whose ``Dataset.__getitem__`` logs one row per item while
               the main loop logs one row per batch of 4 items, N batches;
* read1m-write / read1m-read: write one run of N steps of 10 floats, then (in separate
               fresh processes, REF from the writer's output) read its whole history into a
               pandas DataFrame with the library's own read-back path.

The logging phase stops after SECONDS (the run is then *capped*: fewer steps than asked,
all of them still finished, read back and checked). Every run is read back in full
into a DataFrame, with the same readers as read1m-read, and its rows are counted and
checked. Prints one JSON line. Needs the library, psutil and pandas (plus torch for
dataloader).
"""

from __future__ import annotations

import contextvars
import glob
import json
import os
import pickle
import struct
import sys
import threading
import time

from child import RssSampler, leveldb_log_records, setup_raw, vm_hwm

RUNS = 50
THREADS = 8
WORKERS, BATCH = 4, 4


def keys_for(n: int) -> list[str]:
    return [f"metric_{i}" for i in range(n)]


def row(step: int, keys: list[str]) -> dict:
    return {k: step * 0.001 + i for i, k in enumerate(keys)}


class Handle:
    """One open run: ``log(step, data)``, ``finish()`` and what finds it again (``ref``)."""

    def __init__(self, log, finish, ref: dict) -> None:
        self.log, self.finish, self.ref = log, finish, ref


# ---------------------------------------------------------------- adapters
# open(outdir, i) -> Handle (run i of this process); frame(outdir, ref) -> DataFrame of
# the run's whole history, read back the way a user of that library would.


class Mpbackend:
    name = "mpbackend"
    how_read = "`mpbackend.Api(dir).run(path).history()` (a DataFrame)"

    @staticmethod
    def version() -> str:
        import mpbackend
        return mpbackend.__version__

    @staticmethod
    def open(outdir: str, i: int) -> Handle:
        import mpbackend

        run = mpbackend.init(project="bench", name=f"run-{i}", dir=outdir, reinit="create_new")
        return Handle(lambda step, data: run.log(data), run.finish, {"path": run.path})

    @staticmethod
    def frame(outdir: str, ref: dict):
        import mpbackend
        return mpbackend.Api(outdir).run(ref["path"]).history()


class Wandb:
    name = "wandb"
    how_read = ("wandb has no offline reader in Python (wandb-core reads .wandb files): the "
                ".wandb file's LevelDB-log records parsed with wandb's protobuf classes, each "
                "history item's value_json decoded, rows into `pd.DataFrame`")

    @staticmethod
    def version() -> str:
        import wandb
        return wandb.__version__

    @staticmethod
    def open(outdir: str, i: int) -> Handle:
        import wandb

        settings = wandb.Settings(mode="offline", silent=True, console="off", save_code=False,
                                  disable_git=True, disable_job_creation=True,
                                  x_disable_stats=True, x_disable_meta=True)
        run = wandb.init(project="bench", name=f"run-{i}", dir=outdir, settings=settings,
                         reinit="create_new")
        return Handle(lambda step, data: run.log(data), run.finish, {"id": run.id})

    @staticmethod
    def frame(outdir: str, ref: dict):
        import pandas as pd
        from wandb.proto import wandb_internal_pb2 as pb

        files = glob.glob(os.path.join(outdir, "wandb", f"offline-run-*-{ref['id']}",
                                       f"run-{ref['id']}.wandb"))
        if len(files) != 1:
            raise RuntimeError(f"{len(files)} .wandb files for run {ref['id']}")
        rows = []
        loads = json.loads
        for data in leveldb_log_records(files[0]):
            rec = pb.Record()
            rec.ParseFromString(data)
            if rec.WhichOneof("record_type") == "history":
                rows.append({(item.key or ".".join(item.nested_key)): loads(item.value_json)
                             for item in rec.history.item})
        return pd.DataFrame(rows)


class Trackio:
    name = "trackio"
    how_read = ("`trackio.sqlite_storage.SQLiteStorage.get_logs(project, run)` (what its "
                "dashboard reads; trackio.Api has no history call) into `pd.DataFrame`")

    @staticmethod
    def version() -> str:
        import trackio
        return trackio.__version__

    @staticmethod
    def open(outdir: str, i: int) -> Handle:
        import trackio

        # trackio.init() finishes the current run of its context (a ContextVar): each run
        # is opened in a context of its own so that all of them stay open together.
        run = contextvars.Context().run(trackio.init, project="bench", name=f"run-{i}",
                                        embed=False, auto_log_cpu=False, auto_log_gpu=False)
        return Handle(lambda step, data: run.log(data), run.finish,
                      {"project": "bench", "run": run.name})

    @staticmethod
    def frame(outdir: str, ref: dict):
        import pandas as pd
        from trackio.sqlite_storage import SQLiteStorage
        from trackio.utils import TRACKIO_DIR

        if not str(TRACKIO_DIR).startswith(outdir):
            raise RuntimeError(f"trackio's store is not in the temp dir: {TRACKIO_DIR}")
        return pd.DataFrame(SQLiteStorage.get_logs(ref["project"], ref["run"]))


class Tensorboardx:
    name = "tensorboardx"
    how_read = ("tensorboard's EventAccumulator is not installed (and samples scalars): the "
                "event files' TFRecords parsed with tensorboardX's protobuf classes, one row "
                "per step, into `pd.DataFrame`")

    @staticmethod
    def version() -> str:
        import tensorboardX
        return tensorboardX.__version__

    @staticmethod
    def open(outdir: str, i: int) -> Handle:
        import tensorboardX

        logdir = os.path.join(outdir, f"run-{i}")
        writer = tensorboardX.SummaryWriter(logdir=logdir)

        def log(step, data):
            for k, v in data.items():
                writer.add_scalar(k, v, step)

        return Handle(log, writer.close, {"logdir": logdir})

    @staticmethod
    def frame(outdir: str, ref: dict):
        import pandas as pd
        from tensorboardX.proto import event_pb2

        rows: dict[int, dict] = {}
        for path in sorted(glob.glob(os.path.join(ref["logdir"], "events.out.tfevents.*"))):
            with open(path, "rb") as f:
                buf = f.read()
            pos = 0
            while pos + 12 <= len(buf):  # TFRecord: u64 length, u32 crc, data, u32 crc
                (n,) = struct.unpack_from("<Q", buf, pos)
                ev = event_pb2.Event()
                ev.ParseFromString(buf[pos + 12:pos + 12 + n])
                pos += 12 + n + 4
                if ev.HasField("summary"):
                    cells = rows.setdefault(ev.step, {})
                    for v in ev.summary.value:
                        cells[v.tag] = v.simple_value
        return pd.DataFrame.from_dict(rows, orient="index").sort_index()


class Mlflow:
    name = "mlflow"
    how_read = ("`MlflowClient.get_metric_history(run_id, key)` for each key of the run, "
                "joined on step into `pd.DataFrame`")

    @staticmethod
    def version() -> str:
        import mlflow
        return mlflow.__version__

    @staticmethod
    def open(outdir: str, i: int) -> Handle:
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = "file://" + os.path.join(outdir, "mlruns")
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(tracking_uri=uri)
        exp = mlflow.set_experiment("bench")
        run_id = client.create_run(exp.experiment_id, run_name=f"run-{i}").info.run_id

        def log(step, data):  # run_id: the fluent API's active run is per thread
            mlflow.log_metrics(data, step=step, run_id=run_id)

        return Handle(log, lambda: client.set_terminated(run_id), {"run_id": run_id})

    @staticmethod
    def frame(outdir: str, ref: dict):
        import pandas as pd
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri="file://" + os.path.join(outdir, "mlruns"))
        keys = sorted(client.get_run(ref["run_id"]).data.metrics)
        return pd.DataFrame({k: pd.Series({m.step: m.value for m in
                                           client.get_metric_history(ref["run_id"], k)})
                             for k in keys}).sort_index()


class Raw:
    name = "raw"
    fmt = "pickle"
    how_read = "the pickle frames unpickled, the dicts into `pd.DataFrame`"

    @staticmethod
    def version() -> str:
        return "-"

    @classmethod
    def open(cls, outdir: str, i: int) -> Handle:
        if i:
            raise RuntimeError("the raw baseline has one run per process")
        _, log, finish, _ = setup_raw(outdir, cls.fmt)
        return Handle(log, finish, {"path": os.path.join(outdir, "raw.out")})

    @classmethod
    def frame(cls, outdir: str, ref: dict):
        import pandas as pd

        with open(ref["path"], "rb") as f:
            buf = f.read()
        if cls.fmt == "json":
            loads = json.loads
            return pd.DataFrame([loads(line)[1] for line in buf.splitlines()])
        pos, recs = 0, []
        while pos < len(buf):
            (n,) = struct.unpack_from("<I", buf, pos)
            recs.extend(data for _, data in pickle.loads(buf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        return pd.DataFrame(recs)


class Nolog:
    """The dataloader workload's baseline: the same loop with no logging at all."""

    name = "none"
    how_read = "nothing to read"

    @staticmethod
    def version() -> str:
        return "-"

    @staticmethod
    def open(outdir: str, i: int) -> Handle:
        return Handle(lambda step, data: None, lambda: None, {})

    @staticmethod
    def frame(outdir: str, ref: dict):
        return None


class RawJson(Raw):
    name = "raw-json"
    fmt = "json"
    how_read = "the JSON lines decoded, the dicts into `pd.DataFrame`"


ADAPTERS = {a.name: a for a in (Mpbackend, Wandb, Trackio, Tensorboardx, Mlflow, Raw, RawJson,
                                  Nolog)}


# ---------------------------------------------------------------- checks


def check_frame(df, steps: int, keys: list[str]) -> str:
    """'' if ``df`` has ``steps`` rows with ``keys`` and the right last row, else why not."""
    if len(df) != steps:
        return f"{len(df)} rows, not {steps}"
    missing = [k for k in keys if k not in df.columns]
    if missing:
        return f"columns missing: {missing[:3]}"
    if steps:
        last = df.iloc[-1]
        want = row(steps - 1, keys)
        bad = [k for k in keys if abs(float(last[k]) - want[k]) > 1e-5 * max(1.0, abs(want[k]))]
        if bad:
            return f"last row wrong in {bad[:3]}"
    return ""


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * q))] / 1e3 if sorted_ns else 0


# ---------------------------------------------------------------- workloads
# Each returns (rows logged, per-call ns, capped, verify() -> (rows read back, note)).


def w_runs50(lib, outdir, n, seconds, clock):
    keys = keys_for(10)
    handles = [lib.open(outdir, i) for i in range(RUNS)]
    clock("init")
    pc = time.perf_counter_ns
    per_call: list[int] = []
    add = per_call.append
    end = time.perf_counter() + seconds
    done = 0
    for step in range(n):
        data = row(step, keys)
        for h in handles:
            a = pc()
            h.log(step, data)
            add(pc() - a)
        done += 1
        if time.perf_counter() > end:
            break
    clock("loop")
    for h in handles:
        h.finish()
    clock("finish")

    def verify():
        total, notes = 0, []
        for h in handles:
            df = lib.frame(outdir, h.ref)
            total += len(df)
            bad = check_frame(df, done, keys)
            if bad:
                notes.append(bad)
        return total, (f"{RUNS} DataFrames, each {done:,} rows with 10 keys"
                       + (f"; MISMATCH in {len(notes)} runs: {notes[0]}" if notes else ""))

    return done * RUNS, per_call, done < n, verify


def w_keys100(lib, outdir, n, seconds, clock):
    keys = keys_for(100)
    h = lib.open(outdir, 0)
    clock("init")
    pc = time.perf_counter_ns
    per_call: list[int] = []
    end = time.perf_counter() + seconds
    done = 0
    for step in range(n):
        data = row(step, keys)
        a = pc()
        h.log(step, data)
        per_call.append(pc() - a)
        done += 1
        if time.perf_counter() > end:
            break
    clock("loop")
    h.finish()
    clock("finish")

    def verify():
        df = lib.frame(outdir, h.ref)
        bad = check_frame(df, done, keys)
        return len(df), "DataFrame with 100 keys per row" + (f"; MISMATCH: {bad}" if bad else "")

    return done, per_call, done < n, verify


def w_threads8(lib, outdir, n, seconds, clock):
    keys = keys_for(8)
    h = lib.open(outdir, 0)
    per_thread = n // THREADS
    start = threading.Barrier(THREADS + 1)
    calls: list[list[int]] = [[] for _ in range(THREADS)]
    done = [0] * THREADS
    errors: list[str] = []
    end = [0.0]

    def worker(t: int) -> None:
        pc = time.perf_counter_ns
        out = calls[t]
        start.wait()
        try:
            for j in range(per_thread):
                data = {"thread": t, "i": j, **row(j, keys)}
                a = pc()
                h.log(t + THREADS * j, data)  # the step, for the libraries that take one
                out.append(pc() - a)
                done[t] += 1
                if time.perf_counter() > end[0]:
                    break
        except Exception as exc:  # reported after the join
            errors.append(f"thread {t}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    end[0] = time.perf_counter() + seconds
    clock("init")  # thread start-up is not part of the loop
    start.wait()
    for th in threads:
        th.join()
    clock("loop")
    h.finish()
    clock("finish")
    if errors:
        raise RuntimeError(errors[0])

    def verify():
        df = lib.frame(outdir, h.ref)
        note = f"DataFrame rows counted per thread (the `thread` key), {sum(done):,} expected"
        if len(df) != sum(done) or "thread" not in df.columns:
            return len(df), note + f"; MISMATCH: {len(df)} rows"
        counts = df["thread"].astype(int).value_counts().to_dict()
        if counts != {t: d for t, d in enumerate(done) if d}:
            return len(df), note + f"; MISMATCH per thread: {counts}"
        return len(df), note

    calls_all = [c for cs in calls for c in cs]
    return sum(done), calls_all, sum(done) < per_thread * THREADS, verify


def w_dataloader(lib, outdir, n, seconds, clock):
    import torch
    from torch.utils.data import DataLoader, Dataset

    if lib not in (Mpbackend, Nolog):
        raise RuntimeError("the dataloader workload is mpbackend-only (and its no-log baseline)")
    h = lib.open(outdir, 0)
    run_log = h.log

    class Items(Dataset):
        """Each item fetched by a worker logs one row; it returns how long log() took."""

        def __len__(self):
            return n * BATCH

        def __getitem__(self, i):
            pc = time.perf_counter_ns
            a = pc()
            run_log(0, {"item": i, "value": i * 0.5})
            return torch.tensor([i, pc() - a], dtype=torch.int64)

    loader = DataLoader(Items(), batch_size=BATCH, num_workers=WORKERS)
    it = iter(loader)  # starts the workers (fork, the default on Linux)
    clock("init")
    loop_start = time.perf_counter()
    pc = time.perf_counter_ns
    per_call: list[int] = []
    worker_ns: list[int] = []
    items: list[int] = []
    for step, batch in enumerate(it):
        items.extend(batch[:, 0].tolist())
        worker_ns.extend(batch[:, 1].tolist())
        data = {"loss": 1.0 / (step + 1), "batch": step}
        a = pc()
        run_log(step, data)
        per_call.append(pc() - a)
    clock("loop")
    del it, loader
    h.finish()
    clock("finish")
    worker_ns.sort()
    extra = {"batches_per_s": n / (time.perf_counter() - loop_start),
             "worker_log_p50_us": percentile(worker_ns, 0.5),
             "worker_log_p99_us": percentile(worker_ns, 0.99)}

    def verify():
        if lib is Nolog:
            ok = sorted(items) == list(range(n * BATCH))
            return None, "no logging: the DataLoader loop alone" + ("" if ok else "; MISMATCH")
        df = lib.frame(outdir, h.ref)
        note = f"`_worker`-tagged rows: one per item, every worker; {n:,} main-loop rows"
        tagged = df[df["_worker"].notna()] if "_worker" in df.columns else df.iloc[:0]
        main = df[df["_worker"].isna()] if "_worker" in df.columns else df
        bad = []
        if sorted(tagged["item"].astype(int).tolist()) != sorted(items) or \
                len(items) != n * BATCH:
            bad.append(f"{len(tagged)} worker rows for {len(items)} items")
        if set(tagged["_worker"].astype(int)) != set(range(WORKERS)):
            bad.append(f"workers {sorted(set(tagged['_worker'].astype(int)))}")
        if len(main) != n or main["batch"].astype(int).tolist() != list(range(n)):
            bad.append(f"{len(main)} main-loop rows")
        per_worker = tagged["_worker"].astype(int).value_counts().sort_index().tolist()
        return len(df), note + f" (per worker {per_worker})" + (
            f"; MISMATCH: {', '.join(bad)}" if bad else "")

    return n + n * BATCH, per_call, False, verify, extra


def w_read1m_write(lib, outdir, n, seconds, clock):
    keys = keys_for(10)
    h = lib.open(outdir, 0)
    clock("init")
    end = time.perf_counter() + seconds
    done = 0
    for step in range(n):
        h.log(step, row(step, keys))
        done += 1
        if time.perf_counter() > end:
            break
    clock("loop")
    h.finish()
    clock("finish")
    return done, [], done < n, lambda: (None, "read by read1m-read"), {"ref": h.ref}


WORKLOADS = {"runs50": w_runs50, "keys100": w_keys100, "threads8": w_threads8,
             "dataloader": w_dataloader, "read1m-write": w_read1m_write}


def read1m_read(lib, outdir: str, n: int, ref: dict) -> dict:
    """Import, then the whole history into a DataFrame; rows and the last row checked."""
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    import pandas  # noqa: F401 - part of the read's import cost
    version = lib.version()
    t1 = time.perf_counter()
    df = lib.frame(outdir, ref)
    t2 = time.perf_counter()
    sampler.sample()
    sampler.stop()
    bad = check_frame(df, n, keys_for(10))
    return {"version": version, "how_read": lib.how_read, "import_s": t1 - t0, "read_s": t2 - t1,
            "read_us_per_row": (t2 - t1) / max(n, 1) * 1e6,
            "rss_main_mib": max(sampler.peak_main, vm_hwm()) / 2**20, "rows": len(df),
            "verify_note": f"DataFrame {df.shape[0]:,} x {df.shape[1]}"
                           + (f"; MISMATCH: {bad}" if bad else "")}


def main() -> None:
    workload, name, n, outdir, seconds = sys.argv[1:6]
    n, outdir, seconds = int(n), os.path.abspath(outdir), float(seconds)
    lib = ADAPTERS[name]
    base = {"workload": workload, "lib": name, "python": sys.version.split()[0], "n": n}
    if workload == "read1m-read":
        print(json.dumps({**base, **read1m_read(lib, outdir, n, json.loads(sys.argv[6]))}),
              flush=True)
        return
    sampler = RssSampler()
    sampler.start()
    marks = {"start": time.perf_counter()}

    def clock(mark: str) -> None:
        marks[mark] = time.perf_counter()

    version = lib.version()
    rows, per_call, capped, verify, *extra = WORKLOADS[workload](lib, outdir, n, seconds, clock)
    sampler.sample()
    sampler.stop()
    hwm = vm_hwm()  # before the read-back, which is not part of the run
    t = time.perf_counter()
    read_back, note = verify()
    verify_s = time.perf_counter() - t
    per_call.sort()
    loop = marks["loop"] - marks["init"]
    print(json.dumps({
        **base, "version": version, "steps": rows, "capped": capped,
        "init_s": marks["init"] - marks["start"], "loop_s": loop,
        "finish_s": marks["finish"] - marks["loop"], "verify_s": verify_s,
        "log_p50_us": percentile(per_call, 0.5), "log_p99_us": percentile(per_call, 0.99),
        "steps_per_s": rows / (marks["finish"] - marks["init"]),
        "rss_main_mib": max(sampler.peak_main, hwm) / 2**20,
        "rss_bg_mib": sampler.peak_bg / 2**20, "bg_procs": sorted(sampler.bg_names),
        "rows": read_back, "verify_note": note, **(extra[0] if extra else {}),
    }), flush=True)


if __name__ == "__main__":
    main()
