"""One benchmark run of one logging library, in a fresh process (driven by bench/harness.py).

    python bench/peers/child.py LIBRARY STEPS OUTDIR

Runs under the main interpreter (mpbackend, raw) or the peers' venv (wandb, trackio,
tensorboardx, mlflow). Needs only the library itself and psutil. Prints one JSON line.

Every library gets the same workload: STEPS steps, each a dict of 10 floats built in the
loop; the time each step's logging call blocks the loop is taken with perf_counter_ns.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import struct
import subprocess
import sys
import threading
import time

import psutil

KEYS = [f"metric_{i}" for i in range(10)]


class RssSampler(threading.Thread):
    """Peak RSS of this process and the summed RSS of its descendants, every ~50 ms."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.me = psutil.Process()
        self.peak_main = 0
        self.peak_bg = 0
        self.bg_names: set[str] = set()
        self._halt = threading.Event()

    def sample(self) -> None:
        try:
            self.peak_main = max(self.peak_main, self.me.memory_info().rss)
            total = 0
            for child in self.me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                    self.bg_names.add(child.name())
                except psutil.Error:
                    pass
            self.peak_bg = max(self.peak_bg, total)
        except psutil.Error:
            pass

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join()


def vm_hwm() -> int:
    """The kernel's peak RSS of this process (bytes), which sampling can miss."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------- adapters
# Each returns (version, log(step, data), finish(), verify() -> (rows, note)).


def setup_mpbackend(outdir: str):
    import mpbackend

    run = mpbackend.init(project="bench", dir=outdir)

    def log(step, data):
        run.log(data)

    def verify():
        reader = mpbackend.RunReader(run.dir)
        last = reader.history(min_step=reader.row_count() - 1)
        ok = bool(last) and last[-1].get("metric_9") == (len_steps - 1) * 0.001 + 9
        return reader.row_count(), "RunReader.row_count" + ("" if ok else "; LAST ROW MISMATCH")

    return mpbackend.__version__, log, run.finish, verify


def leveldb_log_records(path: str) -> list[bytes]:
    """The records of a .wandb file: a 7-byte header, then the LevelDB log format (32 KiB
    blocks of chunks, each chunk a u32 checksum, u16 length, u8 type: 1 full, 2 first,
    3 middle, 4 last). Written from the format's description; checksums are not checked."""
    with open(path, "rb") as f:
        buf = f.read()
    block, pos, out, frag = 32768, 7, [], b""
    while pos + 7 <= len(buf):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack_from("<IHB", buf, pos)
        if kind == 0:
            pos += left
            continue
        data = buf[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind == 1:
            out.append(data)
        elif kind == 2:
            frag = data
        elif kind == 3:
            frag += data
        elif kind == 4:
            out.append(frag + data)
            frag = b""
    return out


def setup_wandb(outdir: str):
    import wandb

    settings = wandb.Settings(mode="offline", silent=True, console="off", save_code=False,
                              disable_git=True, disable_job_creation=True,
                              x_disable_stats=True, x_disable_meta=True)
    run = wandb.init(project="bench", dir=outdir, settings=settings)

    def log(step, data):
        run.log(data)

    def verify():
        files = glob.glob(os.path.join(outdir, "wandb", "offline-run-*", "run-*.wandb"))
        if len(files) != 1:
            return None, f"{len(files)} .wandb files"
        from wandb.proto import wandb_internal_pb2 as pb

        rows, last = 0, None
        for data in leveldb_log_records(files[0]):
            rec = pb.Record()
            rec.ParseFromString(data)
            if rec.WhichOneof("record_type") == "history":
                rows += 1
                last = rec.history
        ok = last is not None and any(
            item.key == "metric_9" or list(item.nested_key) == ["metric_9"]
            for item in last.item)
        return rows, "history records parsed from the .wandb file" + (
            "" if ok else "; LAST ROW MISMATCH")

    return wandb.__version__, log, run.finish, verify


def setup_trackio(outdir: str):
    import trackio

    run = trackio.init(project="bench", name="bench-run", embed=False,
                       auto_log_cpu=False, auto_log_gpu=False)

    def log(step, data):
        trackio.log(data)

    def verify():
        import sqlite3

        from trackio.utils import TRACKIO_DIR

        dbs = glob.glob(os.path.join(str(TRACKIO_DIR), "*.db"))
        if not str(TRACKIO_DIR).startswith(outdir):
            return None, f"store not in the temp dir: {TRACKIO_DIR}"
        rows = 0
        for db in dbs:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            rows += con.execute("SELECT COUNT(*) FROM metrics WHERE run_name = ?",
                                (run.name,)).fetchone()[0]
            con.close()
        return rows, "rows in trackio's SQLite metrics table"

    return trackio.__version__, log, trackio.finish, verify


def setup_tensorboardx(outdir: str):
    import tensorboardX

    writer = tensorboardX.SummaryWriter(logdir=outdir)

    def log(step, data):
        for k, v in data.items():
            writer.add_scalar(k, v, step)

    def verify():
        from tensorboardX.proto import event_pb2

        steps: set[int] = set()
        scalars = 0
        for path in glob.glob(os.path.join(outdir, "events.out.tfevents.*")):
            with open(path, "rb") as f:
                buf = f.read()
            pos = 0
            while pos + 12 <= len(buf):  # TFRecord: u64 length, u32 crc, data, u32 crc
                (n,) = struct.unpack_from("<Q", buf, pos)
                ev = event_pb2.Event()
                ev.ParseFromString(buf[pos + 12:pos + 12 + n])
                pos += 12 + n + 4
                if ev.HasField("summary"):
                    scalars += len(ev.summary.value)
                    steps.add(ev.step)
        if scalars != 10 * len(steps):
            return len(steps), f"{scalars} scalars for {len(steps)} steps; MISMATCH"
        return len(steps), "steps with 10 scalars each in the event file"

    return tensorboardX.__version__, log, writer.close, verify


def setup_mlflow(outdir: str):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = "file://" + os.path.join(outdir, "mlruns")
    mlflow.set_tracking_uri(uri)
    run = mlflow.start_run()
    run_id = run.info.run_id

    def log(step, data):
        mlflow.log_metrics(data, step=step)

    def verify():
        client = MlflowClient(tracking_uri=uri)
        counts = {k: len(client.get_metric_history(run_id, k)) for k in (KEYS[0], KEYS[-1])}
        if len(set(counts.values())) != 1:
            return min(counts.values()), f"MISMATCH {counts}"
        return counts[KEYS[0]], "MlflowClient.get_metric_history(metric_0, metric_9)"

    return mlflow.__version__, log, mlflow.end_run, verify


RAW_READER = """
import json, pickle, struct, sys
fd, path, fmt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
enc = json.JSONEncoder().encode
with open(fd, "rb") as src, open(path, "wb") as out:
    while True:
        head = src.read(4)
        if len(head) < 4:
            break
        recs = pickle.loads(src.read(struct.unpack("<I", head)[0]))
        if fmt == "json":
            out.write("".join([enc(rec) + "\\n" for rec in recs]).encode())
        else:
            frame = pickle.dumps(recs, protocol=5)
            out.write(struct.pack("<I", len(frame)) + frame)
    out.flush()
"""


def setup_raw(outdir: str, fmt: str = "pickle"):
    """The physical limit of this design: pickled batches of 1,000 through a pipe to a child
    that unpickles them and writes them to a file (pickle frames, or JSON lines)."""
    path = os.path.join(outdir, "raw.out")
    r, w = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", RAW_READER, str(r), path, fmt],
                             pass_fds=(r,))
    os.close(r)
    sink = open(w, "wb", buffering=0)
    batch: list = []

    def log(step, data):
        batch.append((step, data))
        if len(batch) == 1000:
            payload = pickle.dumps(batch, protocol=5)
            sink.write(struct.pack("<I", len(payload)) + payload)
            batch.clear()

    def finish():
        if batch:
            payload = pickle.dumps(batch, protocol=5)
            sink.write(struct.pack("<I", len(payload)) + payload)
        sink.close()
        child.wait()

    def verify():
        with open(path, "rb") as f:
            buf = f.read()
        if fmt == "json":
            lines = buf.splitlines()
            ok = json.loads(lines[-1]) == [len_steps - 1, last_row(len_steps - 1)]
            return len(lines), "lines in the JSON-lines file" + ("" if ok else "; MISMATCH")
        pos, recs = 0, []
        while pos < len(buf):
            (n,) = struct.unpack_from("<I", buf, pos)
            recs.extend(pickle.loads(buf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        ok = recs[-1] == (len_steps - 1, last_row(len_steps - 1))
        return len(recs), "records in the pickle frames" + ("" if ok else "; MISMATCH")

    return "-", log, finish, verify


def last_row(step: int) -> dict:
    return {k: step * 0.001 + i for i, k in enumerate(KEYS)}


ADAPTERS = {"mpbackend": setup_mpbackend, "wandb": setup_wandb, "trackio": setup_trackio,
            "tensorboardx": setup_tensorboardx, "mlflow": setup_mlflow, "raw": setup_raw,
            "raw-json": lambda outdir: setup_raw(outdir, "json")}
len_steps = 0


def main() -> None:
    global len_steps
    lib, steps, outdir = sys.argv[1], int(sys.argv[2]), os.path.abspath(sys.argv[3])
    len_steps = steps
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    version, log, finish, verify = ADAPTERS[lib](outdir)  # import + setup + init
    t1 = time.perf_counter()
    pc = time.perf_counter_ns
    per_call = [0] * steps
    t2 = time.perf_counter()
    for step in range(steps):
        data = {k: step * 0.001 + i for i, k in enumerate(KEYS)}
        a = pc()
        log(step, data)
        per_call[step] = pc() - a
    t3 = time.perf_counter()
    finish()
    t4 = time.perf_counter()
    sampler.sample()
    sampler.stop()
    hwm = vm_hwm()  # before the read-back, which is not part of the run
    rows, note = verify()
    t5 = time.perf_counter()
    per_call.sort()
    print(json.dumps({
        "lib": lib, "version": version, "python": sys.version.split()[0], "steps": steps,
        "init_s": t1 - t0, "loop_s": t3 - t2, "finish_s": t4 - t3, "verify_s": t5 - t4,
        "log_p50_us": per_call[steps // 2] / 1e3,
        "log_p99_us": per_call[min(steps - 1, int(steps * 0.99))] / 1e3,
        "log_max_us": per_call[-1] / 1e3,
        "steps_per_s": steps / (t4 - t2),
        "rss_main_mib": max(sampler.peak_main, hwm) / 2**20,
        "rss_bg_mib": sampler.peak_bg / 2**20, "bg_procs": sorted(sampler.bg_names),
        "rows": rows, "verify_note": note,
    }), flush=True)


if __name__ == "__main__":
    main()
