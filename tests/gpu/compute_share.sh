#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Compute-share benchmark: how much of the GPU's time a job gets under CUDA_DEVICE_SM_LIMIT.
# Usage: tests/gpu/compute_share.sh [LIB] [BUILD_DIR] [OUT_DIR]
#   LIB        libsoftmig.so to preload (default build-gpu/lib/libsoftmig.so, built if missing)
#   BUILD_DIR  where share_bench is built (default build-gpu)
#   OUT_DIR    where compute_share.md, .json and .log go (default $OUT or /tmp/softmig-gpu)
# Environment: SHARE_SECS (seconds per measurement, default 2), SHARE_BUDGET_S (no measurement
# starts after this many seconds, default 900), SHARE_TWO_PROC_LOADS (loads measured with two
# processes too, default all), SHARE_PIN=0 (do not pin the load processes to CPU cores),
# SHARE_LOADS (loads of the grid, default all), SHARE_PARTS (default "grid two_jobs busy burst
# green"), SHARE_PERIOD_MS (softmig's period for every job, and the pause control's).
# Host-bound loads (launch, train): SHARE_ROUNDS (default 8) rounds of SHARE_TURN_SECS (default 1)
# turns, served by SHARE_SETS (default 4) fresh sets of processes in turn, see served_grid().
# Two jobs and busy card run for the loads in SHARE_LOADS.
# Run time on the H100 machine with the defaults: about 16 minutes (the host-bound loads about 11);
# never much over 17, because of SHARE_BUDGET_S. Where one command may run only 10 minutes, run it
# in three parts: SHARE_LOADS=launch SHARE_PARTS="grid two_jobs busy" (about 5 minutes), then
# SHARE_LOADS=train SHARE_PARTS="grid busy" (about 6), then SHARE_LOADS="matmul graph coop
# bandwidth" (about 3; the host-bound loads bring bare turns of their own, the others use the
# grid's bare rates).
# Each load process is pinned to two cores of its own (the n-th process of a measurement to cores
# 2n+2 and 2n+3), as a SLURM job is to its cores: the host-bound loads vary between processes by
# up to ~15 % unpinned, and over seconds by up to 25 % on this VM, so they are measured in short
# turns of processes that stay up, interleaved with bare turns.
#
# Loads: tests/gpu/share_bench.cu (matmul, launch, graph, coop, bandwidth) and
# tests/gpu/share_train.py (train). Measured:
#   a. bare rate, 1 process and 2 processes at once (summed);
#   b. preloaded, CUDA_DEVICE_SM_LIMIT 10/25/50/75/100, 1 process and 2 processes of one job:
#      relative = rate / bare rate with as many processes;
#   c. two jobs at 50 % (phases 0 and 50) together, on matmul and launch: each relative to 1 bare
#      (matmul: the mean of SHARE_TWO_JOBS_RUNS runs, default 3; launch: in turns, as in a.-b.);
#   c2. busy card: the job at 25 % and 50 % while a matmul job has the rest of the GPU's time
#      (host-bound loads: also the load pausing itself outside the same windows, as reference);
#   d. burst: a 25 % burst job alone; then a 25 % burst job joined after 2 s by a 50 % strict one
#      (rate before and during, and how fast the burst job falls back);
#   e. overhead: launch rate preloaded without a limit against bare, in the turns of the launch
#      grid (reported; the verdict on the overhead is tests/gpu/run.sh's in-process A/B);
#   f. green: the matmul alone in green contexts of 32, 64 and 96 SMs, without softmig: what a
#      spatial slice of the card delivers, for comparison.
# The GPU's SM clock, temperature and power are sampled every 100 ms (nvidia-smi) and each
# measurement notes their medians over its timed interval.
# Prints progress lines ("# ..."), the table, "RESULT {json}" lines for tests/gpu/summarize.py,
# and writes OUT_DIR/compute_share.md (the table), compute_share.json (every measurement) and
# compute_share.log (every load's stdout).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${2:-$ROOT/build-gpu}"
LIB="${1:-$BUILD/lib/libsoftmig.so}"
OUT="${3:-${OUT:-/tmp/softmig-gpu}}"
mkdir -p "$OUT" "$BUILD" || exit 1
T_BEGIN=$SECONDS

if [[ ! -f "$LIB" ]]; then
  if [[ "$LIB" != "$BUILD/lib/libsoftmig.so" ]]; then
    echo "compute share: $LIB not found"
    exit 1
  fi
  echo "compute share: building libsoftmig.so in $BUILD" >&2
  { cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOFTMIG_BUILD_TESTS=OFF \
          -DSOFTMIG_BUILD_BENCH=OFF -DSOFTMIG_BUILD_TOOLS=OFF &&
    cmake --build "$BUILD" --target softmig; } >&2 || { echo "compute share: libsoftmig.so did not build"; exit 1; }
fi

BUILD="$(cd "$BUILD" && pwd)"
LIB="$(realpath "$LIB")"   # LD_PRELOAD must not depend on the loads' working directory

NVCC="${NVCC:-nvcc}"
command -v "$NVCC" > /dev/null 2>&1 || NVCC=/usr/local/cuda/bin/nvcc
BENCH="$BUILD/share_bench"
SRC="$ROOT/tests/gpu/share_bench.cu"
if [[ ! -x "$BENCH" || "$SRC" -nt "$BENCH" ]]; then
  "$NVCC" -O2 -std=c++17 -arch=sm_90 -o "$BENCH" "$SRC" -lcublas -lcuda >&2 ||
    { echo "compute share: share_bench did not build"; exit 1; }
fi

exec "${PYTHON:-python3}" - "$LIB" "$BENCH" "$ROOT/tests/gpu/share_train.py" "$OUT" "$((SECONDS - T_BEGIN))" <<'PY'
import bisect
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

LIB, BENCH, TRAIN, OUT = sys.argv[1:5]
BUILD_S = float(sys.argv[5])
SECS = float(os.environ.get("SHARE_SECS", "2"))
BUDGET = float(os.environ.get("SHARE_BUDGET_S", "900"))
T0 = time.monotonic()
LOADS = ["matmul", "launch", "train", "graph", "coop", "bandwidth"]
GRID = [l for l in os.environ.get("SHARE_LOADS", " ".join(LOADS)).split() if l in LOADS]
PARTS = os.environ.get("SHARE_PARTS", "grid two_jobs busy burst green").split()
LIMITS = [10, 25, 50, 75, 100]
TWO = [l for l in os.environ.get("SHARE_TWO_PROC_LOADS", " ".join(LOADS)).split() if l in LOADS]
UNIT = {"matmul": "GEMM/s", "launch": "launches/s", "train": "steps/s", "graph": "graphs/s",
        "coop": "launches/s", "bandwidth": "kernels/s"}
RAW = open(os.path.join(OUT, "compute_share.log"), "w")
DATA = {"secs": SECS, "lib": LIB, "cells": {}, "two_jobs": {}, "shared": {}, "shared_paused": {},
        "shared_matmul": {}, "burst": {}, "overhead": {}, "green": {}}

NCPU = os.cpu_count() or 1
PIN = os.environ.get("SHARE_PIN", "1") != "0" and NCPU >= 6
HOST = ("launch", "train")   # host-bound: measured in turns by processes that stay up
ROUNDS = max(1, int(os.environ.get("SHARE_ROUNDS", "8")))
SETS = min(ROUNDS, max(1, int(os.environ.get("SHARE_SETS", "4"))))
TURN_SECS = float(os.environ.get("SHARE_TURN_SECS", "1"))
TURN_WARM_MS = 100
SERVE = {"SHARE_SERVE": "1", "SHARE_WARM_MS": str(TURN_WARM_MS)}   # processes that stay up, in turns
TWO_JOBS_RUNS = max(1, int(os.environ.get("SHARE_TWO_JOBS_RUNS", "3")))
PERIOD_MS = os.environ.get("SHARE_PERIOD_MS", "")   # softmig's period for every job (default: its own)
DEFAULT_PERIOD_MS = 200   # softmig's own (core::kDefaultPeriodNs)
STRIP = ("CUDA_DEVICE_MEMORY_LIMIT", "CUDA_DEVICE_SM_", "SOFTMIG_SM_")
BASE_ENV = {k: v for k, v in os.environ.items()
            if not k.startswith(STRIP) and k not in ("SLURM_JOB_ID", "LD_PRELOAD", "SOFTMIG_SESSION")}
_sessions = [0]


def session(name):
    _sessions[0] += 1
    return "cs%d-%s-%d" % (os.getpid(), name, _sessions[0])


def is_bare(over):
    """over None: bare; a dict with "_bare": bare with the load's own settings (SHARE_DUTY)."""
    return over is None or "_bare" in over


def env_for(over, board):
    """Bare (no LD_PRELOAD) or preloaded with the settings in `over`, on the given board."""
    e = dict(BASE_ENV)
    e["SHARE_WAIT_GO"] = "1"
    if not is_bare(over):
        e["LD_PRELOAD"] = LIB
        e["SOFTMIG_SM_BOARD"] = board
        if PERIOD_MS:
            e["SOFTMIG_SM_PERIOD_MS"] = PERIOD_MS
    else:
        e["SHARE_DUTY_PERIOD_MS"] = PERIOD_MS or str(DEFAULT_PERIOD_MS)   # the pause control's: softmig's
    e.update({k: v for k, v in (over or {}).items() if not k.startswith("_")})
    return e


def cores_for(slot):
    return {(2 + 2 * slot) % NCPU, (3 + 2 * slot) % NCPU}


def pin_all(pid, cores):
    """Moves every thread of a process to `cores` (new threads inherit it)."""
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                os.sched_setaffinity(int(tid), cores)
            except OSError:
                pass
    except OSError:
        pass


def new_board():
    d = tempfile.mkdtemp(prefix="softmig-board-")
    os.chmod(d, 0o1777)
    return d


def elapsed():
    return time.monotonic() - T0


class ClockLog:
    """The GPU's SM clock, temperature and power every 100 ms (nvidia-smi), each sample stamped
    with CLOCK_MONOTONIC on arrival: the clock a measurement ran at explains what a compute-bound
    load does in its share of the time (the card is power-capped when the load fills it)."""

    def __init__(self):
        self.samples = []   # (monotonic ns, MHz, deg C, W)
        self.p = None
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        try:
            self.p = subprocess.Popen(["nvidia-smi", "-i", gpu, "--query-gpu=clocks.sm,temperature.gpu,power.draw",
                                       "--format=csv,noheader,nounits", "-lms", "100"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                mhz, temp, watts = (float(x) for x in line.split(","))
            except ValueError:
                continue
            self.samples.append((time.monotonic_ns(), mhz, temp, watts))

    def during(self, t0_ns, t1_ns):
        """Median (MHz, deg C, W) of the samples in [t0, t1], or None."""
        got = [s for s in list(self.samples) if t0_ns <= s[0] <= t1_ns]
        if not got:
            return None
        return tuple(statistics.median(s[i] for s in got) for i in (1, 2, 3))

    def stop(self):
        if self.p is not None and self.p.poll() is None:
            self.p.kill()


CLOCKS = ClockLog()


def human(x):
    if x is None:
        return "-"
    if x >= 1e5:
        return "%.0fk" % (x / 1e3)
    if x >= 1e4:
        return "%.1fk" % (x / 1e3)
    return "%.1f" % x if x >= 10 else "%.3f" % x


def progress(msg):
    print("# [%5.1f s] %s" % (elapsed(), msg), flush=True)


class Proc:
    """One load process: started with SHARE_WAIT_GO=1, its stdout read without blocking."""

    def __init__(self, tag, load, secs, over, board, slot=0, timeline=False, pin_now=True):
        if load == "train":
            argv = [sys.executable, TRAIN, "%g" % secs]
        else:
            argv = [BENCH, load, "%g" % secs] + (["--timeline"] if timeline else [])
        self.tag = tag
        desc = " ".join(["bare" if is_bare(over) else "preloaded"] +
                        ["%s=%s" % kv for kv in sorted((over or {}).items()) if not kv[0].startswith("_")])
        RAW.write("== %s: %s %s\n" % (tag, desc, " ".join(argv)))
        RAW.flush()
        cores = cores_for(slot)
        pin = (lambda: os.sched_setaffinity(0, cores)) if PIN and pin_now else None
        self.slot = slot
        self.p = subprocess.Popen(argv, env=env_for(over, board), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, bufsize=0, start_new_session=True,
                                  preexec_fn=pin)
        self.fd = self.p.stdout.fileno()
        self.buf = b""
        self.lines = []
        self.eof = False

    def feed(self):
        data = os.read(self.fd, 65536)
        if not data:
            self.eof = True
            if self.buf:
                self.lines.append(self.buf.decode(errors="replace"))
                self.buf = b""
            return
        self.buf += data
        *done, self.buf = self.buf.split(b"\n")
        self.lines += [l.decode(errors="replace") for l in done]

    def first(self, word):
        for l in self.lines:
            f = l.split()
            if f and f[0] == word:
                return f
        return None

    def value(self, word):
        f = self.first(word)
        return int(f[1]) if f and len(f) > 1 else None

    def go(self, more=False):
        """Starts the measurement; more=True (SHARE_SERVE): keeps stdin open for further turns."""
        try:
            self.p.stdin.write(b"go\n")
            if not more:
                self.p.stdin.close()
        except OSError:
            pass

    def results(self):
        return sum(1 for l in self.lines if l.startswith("SHARE "))

    def finish(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except OSError:
                pass
        rc = self.p.wait()
        RAW.write("\n".join("%s| %s" % (self.tag, l) for l in self.lines) + "\n-- %s rc=%d\n" % (self.tag, rc))
        RAW.flush()
        self.p.stdout.close()
        return rc

    def share(self):
        """The last SHARE line as a dict (numbers as floats), with the GPU's median SM clock,
        temperature and power during its timed interval (mhz, temp_c, watts) where sampled; or None."""
        start = None
        for i in range(len(self.lines) - 1, -1, -1):
            l = self.lines[i]
            if not l.startswith("SHARE "):
                continue
            for earlier in reversed(self.lines[:i]):
                if earlier.startswith("START "):
                    start = int(earlier.split()[1])
                    break
            out = {}
            for kv in l.split()[1:]:
                k, _, v = kv.partition("=")
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
            seen = CLOCKS.during(start, start + int(out.get("seconds", 0) * 1e9)) if start else None
            if seen:
                out["mhz"], out["temp_c"], out["watts"] = seen
            return out
        return None


def pump(procs, done, deadline):
    """Reads the processes' output until done() or the deadline (time.monotonic())."""
    while not done():
        live = [p for p in procs if not p.eof]
        left = deadline - time.monotonic()
        if not live or left <= 0:
            break
        ready, _, _ = select.select([p.fd for p in live], [], [], min(left, 0.05))
        for p in live:
            if p.fd in ready:
                p.feed()
    return done()


SKIPPED = set()   # tags of measurements not started: the time budget was spent


def over_budget(tag):
    if elapsed() > BUDGET:
        progress("%s: skipped (time budget SHARE_BUDGET_S=%g s spent)" % (tag, BUDGET))
        SKIPPED.add(tag)
        return True
    return False


def start_procs(tag, specs, board):
    procs = []
    for i, (load, secs, over) in enumerate(specs):
        try:
            procs.append(Proc("%s #%d" % (tag, i + 1), load, secs, over, board, slot=i))
        except OSError as e:
            progress("%s: could not start: %s" % (tag, e))
            for p in procs:
                p.finish()
            return None
    return procs


def measure(tag, specs):
    """specs: [(load, secs, over)]; all started, released together once all are ready.
    Returns one SHARE dict (or None) per process, or None when skipped."""
    if over_budget(tag):
        return None
    board = new_board()
    procs = start_procs(tag, specs, board)
    if procs is None:
        shutil.rmtree(board, ignore_errors=True)
        return [None] * len(specs)
    try:
        pump(procs, lambda: all(p.first("READY") or p.eof for p in procs), time.monotonic() + 90)
        for p in procs:
            p.go()
        longest = max(s[1] for s in specs)
        if not pump(procs, lambda: all(p.eof for p in procs), time.monotonic() + 3 * longest + 30):
            progress("%s: timed out" % tag)
    finally:
        rcs = [p.finish() for p in procs]
        shutil.rmtree(board, ignore_errors=True)
    outs = [p.share() if rc == 0 else None for p, rc in zip(procs, rcs)]
    for p, rc, o in zip(procs, rcs, outs):
        if o is None:
            progress("%s: no result (exit status %d; see its stderr)" % (p.tag, rc))
    return outs


# ---- the grid: bare and each limit, 1 and 2 processes -------------------------------------
cells = {}   # (load, nproc, mode) -> {"rate": sum, "rates": [...], extras}; mode "bare", "bare2" or limit


def total(outs):
    if not outs or any(o is None for o in outs):
        return None
    r = {"rate": sum(o["rate"] for o in outs), "rates": [o["rate"] for o in outs]}
    for k in ("tflops", "gbps"):
        if k in outs[0]:
            r[k] = sum(o[k] for o in outs)
    if len(outs) == 1 and "busy" in outs[0]:
        r["busy"], r["unit_gpu_ms"] = outs[0]["busy"], outs[0]["unit_gpu_ms"]
    for k in ("mhz", "temp_c", "watts"):
        if all(k in o for o in outs):
            r[k] = statistics.mean(o[k] for o in outs)
    return r


def grid(load):
    """The load's cells, one measurement each, bare first."""
    for nproc in ([1, 2] if load in TWO else [1]):
        plan = [("bare", "%s x%d bare" % (load, nproc), None)]
        for pct in LIMITS:
            plan.append((pct, "%s x%d limit %d" % (load, nproc, pct),
                         {"CUDA_DEVICE_SM_LIMIT": str(pct), "SOFTMIG_SM_POLICY": "strict",
                          "SOFTMIG_SESSION": session("%s%d" % (load, nproc))}))
        for mode, tag, over in plan:
            c = total(measure(tag, [(load, SECS, over)] * nproc))
            if c:
                cells[(load, nproc, mode)] = c
                DATA["cells"]["%s x%d %s" % (load, nproc, mode)] = c
                progress("%s: %.3f %s" % (tag, c["rate"], UNIT[load]))
        bare = cells.get((load, nproc, "bare"))
        if bare:
            progress("%s x%d: %s" % (load, nproc, ", ".join(
                "%s %.3f" % (m, cells[(load, nproc, m)]["rate"] / bare["rate"])
                for m in LIMITS if cells.get((load, nproc, m)))))


def host_modes(load, nproc):
    """Every configuration of a host-bound load: bare, each limit with its pause control and, for
    the launch load with one process, preloaded without a limit (the overhead)."""
    modes = ["bare"]
    for pct in LIMITS:
        modes.append(pct)
        if pct < 100:
            modes.append("duty%d" % pct)
    if load == "launch" and nproc == 1:
        modes.append("nolimit")
    return modes


def mode_over(load, nproc, mode):
    over = dict(SERVE)
    if mode == "bare":
        over["_bare"] = "1"
    elif str(mode).startswith("duty"):
        over.update({"_bare": "1", "SHARE_DUTY": mode[4:]})
    elif mode == "nolimit":
        over["SOFTMIG_SESSION"] = session("nolimit")
    else:
        over.update({"CUDA_DEVICE_SM_LIMIT": str(mode), "SOFTMIG_SM_POLICY": "strict",
                     "SOFTMIG_SESSION": session("%s%d" % (load, nproc))})
    return over


def mode_label(mode):
    if mode in ("bare", "nolimit"):
        return "bare" if mode == "bare" else "no limit"
    return "paused outside %s %%" % mode[4:] if str(mode).startswith("duty") else "limit %s" % mode


def turn(procs):
    """One measurement by processes that stay up (SHARE_SERVE): their summed rate, or None."""
    before = [p.results() for p in procs]
    for p in procs:
        p.go(more=True)
    done = pump(procs, lambda: all(p.eof or p.results() > b for p, b in zip(procs, before)),
                time.monotonic() + 3 * TURN_SECS + 30)
    if not done or any(p.results() <= b for p, b in zip(procs, before)):
        return None
    return sum(p.share()["rate"] for p in procs)


def await_served(procs):
    """Waits until processes that stay up (SERVE) are set up, then pins them to their cores."""
    pump(procs, lambda: all(p.first("READY") or p.eof for p in procs), time.monotonic() + 180)
    if PIN:
        for p in procs:
            pin_all(p.p.pid, cores_for(p.slot))


def finish_all(procs):
    for p in procs:
        p.finish()


class Sets:
    """SETS fresh sets of processes that stay up serve the ROUNDS rounds of a series in turn:
    set(rnd) gives the set of round `rnd`, starting it (start(k, live) starts set k, appending
    every process to `live` as it is created) and waiting until it is set up when a new set's
    rounds begin, after stopping the set before. Every process is stopped on leaving the `with`."""

    def __init__(self, tag, start):
        self.tag, self.start = tag, start
        self.live, self.current, self.k = [], None, -1

    def set(self, rnd):
        k = rnd * SETS // ROUNDS
        if k != self.k:
            self.stop()
            self.k = k
            self.current = self.start(k, self.live)
            await_served(self.live)
            progress("%s set %d: %d processes set up" % (self.tag, k + 1, len(self.live)))
        return self.current

    def stop(self):
        finish_all(self.live)
        self.live = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def served_grid(load):
    """A host-bound load (HOST): its rate drifts by 10-25 % over seconds on the VM, and one set of
    processes runs up to ~10 % faster or slower than another for as long as it lives. So every
    configuration is measured TURN_SECS at a time by processes that stay up (as many as the job
    has, a job of their own), taking turns with the others: ROUNDS rounds, each with two bare
    turns, in alternating order; and the rounds are served by SETS fresh sets of processes in
    turn, each set started (all configurations at once, before its rounds) and stopped with its
    rounds. A cell is the mean of its turns; the reference the mean of the bare ones."""
    for nproc in ([1, 2] if load in TWO else [1]):
        tag = "%s x%d" % (load, nproc)
        if over_budget(tag):
            continue
        modes = host_modes(load, nproc)
        board = new_board()
        rates = {m: [] for m in modes}
        rest = modes[1:]
        half = (len(rest) + 1) // 2
        order = ["bare"] + rest[:half] + ["bare"] + rest[half:]

        def start(k, live):
            """Set k: nproc processes per configuration, each configuration a session (job) of its own."""
            procs = {}
            for mode in modes:
                procs[mode] = []
                for i in range(nproc):
                    live.append(Proc("%s %s set %d #%d" % (tag, mode_label(mode), k + 1, i + 1), load, TURN_SECS,
                                     mode_over(load, nproc, mode), board, slot=i, pin_now=False))
                    procs[mode].append(live[-1])
            return procs

        try:
            with Sets(tag, start) as sets:
                for rnd in range(ROUNDS):
                    if rnd > 0 and over_budget("%s round %d" % (tag, rnd + 1)):
                        break
                    procs = sets.set(rnd)
                    for mode in (order if rnd % 2 == 0 else order[::-1]):
                        r = turn(procs[mode])
                        if r is not None:
                            rates[mode].append(r)
                        else:
                            progress("%s %s: no result" % (tag, mode_label(mode)))
                    b = statistics.mean(rates["bare"][-2:]) if rates["bare"] else None
                    progress("%s round %d: bare %s; %s" % (tag, rnd + 1, human(b), ", ".join(
                        "%s %.3f" % (mode_label(m), rates[m][-1] / b) for m in rest if rates[m] and b)))
        finally:
            shutil.rmtree(board, ignore_errors=True)
        for mode, rs in rates.items():
            if rs:
                cells[(load, nproc, mode)] = {"rate": statistics.mean(rs), "runs": rs}
                DATA["cells"]["%s x%d %s" % (load, nproc, mode)] = {"mean": cells[(load, nproc, mode)], "runs": rs}


def bare_ref(load, nproc=1):
    """The reference: the mean of the load's bare runs."""
    return cells.get((load, nproc, "bare"))


def bare_rate(load, nproc=1):
    c = bare_ref(load, nproc)
    return c["rate"] if c else None


def tolerance(load):
    return 0.02 if load == "matmul" else 0.05


def cell_ok(load, mode, rel):
    """True/False against the target; None where the load is reported only."""
    if load == "bandwidth":
        return None
    if rel is None:
        return False
    if mode == 100:
        # A limit of 100 is no limit. Its cost (<= 2 %) is judged by run.sh's in-process A/B
        # ("launch overhead share100"): between sets of processes this grid resolves ~5 %.
        return rel >= 0.95
    return abs(rel - mode / 100.0) <= tolerance(load)


# ---- c. two jobs at 50 % -------------------------------------------------------------------
two_jobs = {}


def has_bare(load, what):
    """False (and says so) when the load's bare rate was not measured in this run (SHARE_LOADS)."""
    if bare_rate(load) is None:
        progress("%s: skipped, no bare rate of %s in this run" % (what, load))
        return False
    return True


def two_jobs_over(job, phase):
    return {"CUDA_DEVICE_SM_LIMIT": "50", "CUDA_DEVICE_SM_PHASE": str(phase), "SOFTMIG_SM_POLICY": "strict",
            "SOFTMIG_SESSION": session(job)}


def two_jobs_run(load):
    """Jobs A and B at 50 %, phases 0 and 50, together: TWO_JOBS_RUNS runs of fresh processes,
    each job's rate relative to one bare process; host-bound loads in turns (two_jobs_served)."""
    r = {"runs": [], "rel": None}
    two_jobs[load] = r
    DATA["two_jobs"][load] = r
    if load in HOST:
        return two_jobs_served(load, r)   # with bare turns of its own
    if not has_bare(load, "two jobs %s" % load):
        return
    bare = bare_rate(load)
    for i in range(TWO_JOBS_RUNS):
        outs = measure("two jobs %s run %d" % (load, i + 1),
                       [(load, SECS, two_jobs_over("jobA", 0)), (load, SECS, two_jobs_over("jobB", 50))])
        if not outs or not all(outs):
            continue
        run = {"rel": [o["rate"] / bare for o in outs], "mhz": outs[0].get("mhz")}
        r["runs"].append(run)
        progress("two jobs %s run %d: job A %.3f, job B %.3f of one bare process" % (load, i + 1, *run["rel"]))
    if r["runs"]:
        r["rel"] = [statistics.mean(run["rel"][j] for run in r["runs"]) for j in (0, 1)]


def served_together(tag, load, members, groups=None):
    """Host-bound: processes `members` [(label, load, over)] that stay up and run together for
    TURN_SECS at a time, in ROUNDS rounds with a bare turn of `load` each, the rounds served by
    SETS fresh sets of processes in turn, as in served_grid(). `groups` (default: all members at
    once) are the tuples of labels that run together; each group has a turn of its own per round.
    Returns ({label: [its rate in every turn it ran]}, [bare rate per turn],
    {group: {label: [its rate in that group's turns]}})."""
    board = new_board()
    groups = groups or [tuple(label for label, _, _ in members)]
    rates = {label: [] for label, _, _ in members}
    by_group = {group: {label: [] for label in group} for group in groups}
    base = []
    order = [None] + list(groups)   # None: the bare turn

    def start(k, live):
        """Set k: the members (each a session (job) of its own per set, named after theirs) and a
        bare process of `load`."""
        procs = {}
        for i, (label, what, over) in enumerate(members):
            over = dict(over, SOFTMIG_SESSION="%s-s%d" % (over["SOFTMIG_SESSION"], k + 1))
            live.append(Proc("%s: %s set %d" % (tag, label, k + 1), what, TURN_SECS, dict(SERVE, **over), board,
                             slot=int(over.get("_slot", i)), pin_now=False))
            procs[label] = live[-1]
        live.append(Proc("%s: bare set %d" % (tag, k + 1), load, TURN_SECS, dict(SERVE, _bare="1"), board,
                         slot=0, pin_now=False))
        return procs, live[-1]

    try:
        with Sets(tag, start) as sets:
            for rnd in range(ROUNDS):
                if rnd > 0 and over_budget("%s round %d" % (tag, rnd + 1)):
                    break
                procs, bare = sets.set(rnd)
                for group in (order if rnd % 2 == 0 else order[::-1]):
                    if group is None:
                        b = turn([bare])
                        if b is not None:
                            base.append(b)
                    elif turn([procs[label] for label in group]) is not None:
                        for label in group:
                            rates[label].append(procs[label].share()["rate"])
                            by_group[group][label].append(rates[label][-1])
    finally:
        shutil.rmtree(board, ignore_errors=True)
    return rates, base, by_group


def two_jobs_served(load, r):
    """A host-bound load's two jobs, in turns (served_together); each job's rate relative to the
    mean of the series' bare turns. The same two loads pausing themselves outside the same windows
    (SHARE_DUTY, no softmig) take turns of their own: what any time-division share gives them."""
    def paused(phase):
        return {"_bare": "1", "SHARE_DUTY": "50", "SHARE_DUTY_PHASE": str(phase),
                "SOFTMIG_SESSION": session("pause")}

    rates, base, _ = served_together("two jobs %s" % load, load,
                                     [("A", load, two_jobs_over("jobA", 0)), ("B", load, two_jobs_over("jobB", 50)),
                                      ("A paused", load, dict(paused(0), _slot="0")),
                                      ("B paused", load, dict(paused(50), _slot="1"))],
                                     groups=[("A", "B"), ("A paused", "B paused")])
    if base and rates["A"]:
        r["rel"] = [statistics.mean(rates[j]) / statistics.mean(base) for j in ("A", "B")]
        r["turns"] = dict(rates, bare=base)
        progress("two jobs %s: job A %.3f, job B %.3f of one bare process, over %d turns" %
                 (load, r["rel"][0], r["rel"][1], len(rates["A"])))
    if base and rates["A paused"]:
        r["paused"] = [statistics.mean(rates[j]) / statistics.mean(base) for j in ("A paused", "B paused")]
        progress("two jobs %s pausing themselves: A %.3f, B %.3f of one bare process" % (load, *r["paused"]))


# ---- c2. a job on a busy card: the rest of the GPU's time taken by a matmul job ----------
# Alone, a job's kernels run at whatever clock the idle remainder of the card allows (a matmul
# boosts, a light load is clocked down); on a card whose other windows are in use, as when slices
# are sold, the clock is the loaded one.
shared = {}
shared_paused = {}   # host-bound: the same load pausing itself outside its windows, beside the matmul
shared_matmul = {}   # host-bound: the matmul job's rate beside the job and beside the paused load


def shared_run(load, pct):
    """The job at pct % (phase 0) while a matmul job has the rest (phase pct), relative to one bare
    process: host-bound loads in turns with bare turns of their own (served_together), and with
    turns of the load pausing itself outside the same windows (SHARE_DUTY, no softmig) beside the
    same matmul job; the others against the grid's bare rate."""
    over_a = {"CUDA_DEVICE_SM_LIMIT": str(pct), "CUDA_DEVICE_SM_PHASE": "0", "SOFTMIG_SM_POLICY": "strict",
              "SOFTMIG_SESSION": session("sharedA")}
    over_b = {"CUDA_DEVICE_SM_LIMIT": str(100 - pct), "CUDA_DEVICE_SM_PHASE": str(pct),
              "SOFTMIG_SM_POLICY": "strict", "SOFTMIG_SESSION": session("sharedB")}
    tag = "%s at %d %% beside matmul at %d %%" % (load, pct, 100 - pct)
    rel = None
    key = "%s %d" % (load, pct)
    if load in HOST:
        if over_budget(tag):
            return
        # The paused load runs on the job's cores (slot 0), in turns of its own.
        paused = {"_bare": "1", "SHARE_DUTY": str(pct), "SOFTMIG_SESSION": session("sharedP"), "_slot": "0"}
        rates, base, by_group = served_together(tag, load, [("job", load, over_a), ("matmul", "matmul", over_b),
                                                            ("paused", load, paused)],
                                                groups=[("job", "matmul"), ("paused", "matmul")])
        if base and rates["job"]:
            rel = statistics.mean(rates["job"]) / statistics.mean(base)
        if base and rates["paused"]:
            shared_paused[key] = statistics.mean(rates["paused"]) / statistics.mean(base)
            DATA["shared_paused"][key] = shared_paused[key]
            progress("%s pausing itself at %d %% on a busy card: %.3f" % (load, pct, shared_paused[key]))
        # What the matmul job got beside each: a job that does not stop at its window's end takes
        # the other's time.
        mm = {g: by_group[(g, "matmul")]["matmul"] for g in ("job", "paused")}
        if all(mm.values()):
            shared_matmul[key] = {g: statistics.mean(v) for g, v in mm.items()}
            DATA["shared_matmul"][key] = shared_matmul[key]
            progress("the matmul job at %d %% beside %s: %s GEMM/s beside softmig, %s beside it pausing itself" %
                     (100 - pct, load, human(shared_matmul[key]["job"]), human(shared_matmul[key]["paused"])))
    else:
        if not has_bare(load, "%s at %d %% on a busy card" % (load, pct)):
            return
        outs = measure(tag, [(load, SECS, over_a), ("matmul", SECS, over_b)])
        bare = bare_rate(load)
        rel = outs[0]["rate"] / bare if outs and outs[0] and bare else None
    shared[key] = rel
    DATA["shared"][key] = rel
    if rel is not None:
        progress("%s at %d %% on a busy card: %.3f" % (load, pct, rel))


# ---- d. burst -------------------------------------------------------------------------------
burst = {}


def units_at(points, t):
    """Units completed at time t (ns), linear between timeline points."""
    ts = [p[0] for p in points]
    i = bisect.bisect_right(ts, t)
    if i == 0:
        return points[0][1]
    if i == len(points):
        return points[-1][1]
    (t1, u1), (t2, u2) = points[i - 1], points[i]
    return u1 + (u2 - u1) * (t - t1) / (t2 - t1) if t2 > t1 else u2


def burst_run():
    if not has_bare("matmul", "burst"):
        return
    bare = bare_rate("matmul")
    outs = measure("burst alone", [("matmul", SECS, {"CUDA_DEVICE_SM_LIMIT": "25", "SOFTMIG_SM_POLICY": "burst",
                                                     "CUDA_DEVICE_SM_PHASE": "0",
                                                     "SOFTMIG_SESSION": session("burstalone")})])
    if outs and outs[0] and bare:
        burst["alone"] = outs[0]["rate"] / bare
        progress("burst alone at 25 %%: relative %.3f" % burst["alone"])
    tag = "burst timeline"
    if over_budget(tag):
        return
    board = new_board()
    a_secs, b_after, b_secs = 4.0, 2.0, 2.0
    over_a = {"CUDA_DEVICE_SM_LIMIT": "25", "CUDA_DEVICE_SM_PHASE": "0", "SOFTMIG_SM_POLICY": "burst",
              "SOFTMIG_SESSION": session("burstA")}
    # B loads its kernels with its context, before READY: loaded lazily, its first GEMM spends
    # ~60 ms in the driver loading cuBLAS's module, using no GPU, and A rightly goes on meanwhile;
    # the latency is then how B's start-up goes, not how fast A yields.
    over_b = {"CUDA_DEVICE_SM_LIMIT": "50", "CUDA_DEVICE_SM_PHASE": "50", "SOFTMIG_SM_POLICY": "strict",
              "SOFTMIG_SESSION": session("burstB"), "CUDA_MODULE_LOADING": "EAGER"}
    procs = []
    try:
        # Both set up (READY) first; then A goes, and B 2 s after A's START.
        a = Proc("burst A", "matmul", a_secs, over_a, board, slot=0, timeline=True)
        procs.append(a)
        b = Proc("burst B", "matmul", b_secs, over_b, board, slot=1)
        procs.append(b)
        pump(procs, lambda: all(p.first("READY") or p.eof for p in procs), time.monotonic() + 90)
        a.go()
        pump(procs, lambda: a.first("START") or a.eof, time.monotonic() + 90)
        a_start = a.value("START")
        if a_start is not None:
            go_at = (a_start + b_after * 1e9) / 1e9
            pump(procs, lambda: time.monotonic() >= go_at or a.eof, go_at + 1)
            b.go()
            pump(procs, lambda: all(p.eof for p in procs), time.monotonic() + 3 * a_secs + 30)
    finally:
        rcs = [p.finish() for p in procs]
        shutil.rmtree(board, ignore_errors=True)
    if len(procs) < 2 or any(rcs) or not bare:
        progress("%s: no result (exit status %s, bare rate %s)" % (tag, rcs, bare))
        return
    a, b = procs
    a_start, b_begin, b_start = a.value("START"), b.value("BEGIN"), b.value("START")
    sa, sb = a.share(), b.share()
    points = [(a_start + float(f[1]) * 1e6, int(f[2])) for f in (l.split() for l in a.lines) if f and f[0] == "TL"]
    if None in (a_start, b_begin, b_start, sa, sb) or len(points) < 3:
        progress("%s: incomplete output" % tag)
        return
    a_end = points[-1][0]
    b_end = b_start + sb["seconds"] * 1e9

    def rel(t1, t2):
        return (units_at(points, t2) - units_at(points, t1)) / ((t2 - t1) / 1e9) / bare if t2 > t1 else None

    burst["before"] = rel(a_start + 0.2e9, b_begin)
    burst["during"] = rel(b_begin + 0.3e9, min(a_end, b_end))
    burst["b_rel"] = sb["rate"] / bare
    burst["b_begin_after_a_start_s"] = (b_begin - a_start) / 1e9
    # Fall-back: while B wants the GPU, A's work may complete only in A's own windows (phase 0,
    # 25 % of the period) or just after their end (what A had queued at its close: up to 2 ms of
    # work and the GEMM running, charged to A as a spill): the last completion of A's outside
    # them, after B's first GPU work, is when A last used B's time.
    period = int(PERIOD_MS or DEFAULT_PERIOD_MS) * 1e6
    window, slack = 0.25 * period, 5e6
    outside = [t for (t0, u0), (t, u) in zip(points, points[1:])
               if t > b_begin and u > u0 and t % period >= window + slack]
    burst["latency_ms"] = (max(outside) - b_begin) / 1e6 if outside else 0.0
    burst["yielded"] = not outside or max(outside) < min(a_end, b_end) - period
    burst["timeline"] = [[round((p[0] - a_start) / 1e6, 3), p[1]] for p in points]
    burst["b_begin_ms"] = (b_begin - a_start) / 1e6
    burst["b_end_ms"] = (b_end - a_start) / 1e6
    burst["a_start_ns"] = a_start   # CLOCK_MONOTONIC: the timeline's place in the windows
    progress("burst timeline: before %s, during %s, fallback %s, B %.3f" %
             tuple(["%.3f" % burst[k] if burst[k] is not None else "-" for k in ("before", "during")] +
                   ["%.0f ms" % burst["latency_ms"] if burst["yielded"] else "never", burst["b_rel"]]))


# ---- f. green contexts: the spatial slice, for comparison -------------------------------------
green = {}


def green_run():
    """The matmul alone in a green context of N SMs (SHARE_GREEN_SMS), bare: what confining a job
    to its fraction of the SMs delivers on this card, against which the time share is compared."""
    bare = bare_rate("matmul")
    for sms in (32, 64, 96):
        outs = measure("matmul in %d SMs" % sms, [("matmul", SECS, {"_bare": "1", "SHARE_GREEN_SMS": str(sms)})])
        if outs and outs[0] and bare:
            o = outs[0]
            total_sms = o.get("sms", 0)
            green[sms] = {"rate": o["rate"], "rel": o["rate"] / bare, "sms": o.get("green_sms", sms),
                          "fraction": o.get("green_sms", sms) / total_sms if total_sms else None,
                          "unit_gpu_ms": o.get("unit_gpu_ms"), "mhz": o.get("mhz"), "watts": o.get("watts")}
            progress("matmul in a green context of %d SMs: %.3f of bare" % (sms, green[sms]["rel"]))
    DATA["green"] = green


# ---- e. overhead ------------------------------------------------------------------------------
overhead = {}


def overhead_from_turns():
    """The launch load preloaded without a limit against bare, from the turns of the launch grid."""
    b, n = cells.get(("launch", 1, "bare")), cells.get(("launch", 1, "nolimit"))
    if b and n:
        overhead.update({"bare": b["runs"], "preloaded": n["runs"], "relative": n["rate"] / b["rate"]})
        progress("overhead: preloaded without a limit / bare %.4f" % overhead["relative"])


# ---- run, most important first ---------------------------------------------------------------
def safely(fn, *args):
    """A phase that breaks (a bug, an unexpected output) loses its own results only."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001
        progress("%s%r failed: %s: %s" % (fn.__name__, args, type(e).__name__, e))


progress("compute share: %g s per measurement, library %s" % (SECS, LIB))
for load in [l for l in ("matmul", "launch", "train") if l in GRID and "grid" in PARTS]:
    safely(served_grid if load in HOST else grid, load)
safely(overhead_from_turns)
for load in [l for l in ("matmul", "launch") if l in GRID and "two_jobs" in PARTS]:
    safely(two_jobs_run, load)
for load in [l for l in ("matmul", "launch", "train") if l in GRID and "busy" in PARTS]:
    for pct in (25, 50):
        safely(shared_run, load, pct)
if "burst" in PARTS:
    safely(burst_run)
if "green" in PARTS and ("matmul", 1, "bare") in cells:
    safely(green_run)
for load in [l for l in ("graph", "coop", "bandwidth") if l in GRID and "grid" in PARTS]:
    safely(grid, load)
DATA["burst"] = burst
DATA["overhead"] = overhead
CLOCKS.stop()
with open(os.path.join(OUT, "compute_share.json"), "w") as f:
    json.dump(DATA, f, indent=1, sort_keys=True)


# ---- report ---------------------------------------------------------------------------------
def bare_text(load, c):
    if not c:
        return "-"
    s = "%s %s" % (human(c["rate"]), UNIT[load])
    if "tflops" in c:
        s += " (%.0f TFLOP/s)" % c["tflops"]
    if "gbps" in c:
        s += " (%.0f GB/s)" % c["gbps"]
    runs = c.get("runs", [])
    if len(runs) > 1:
        s += ", mean of %d turns (%s-%s)" % (len(runs), human(min(runs)), human(max(runs)))
    return s


def f3(x):
    return "-" if x is None else "%.3f" % x


def mark(ok):
    return "" if ok is None else (" pass" if ok else " FAIL")


def mhz_text(c):
    """The SM clock (and power) a measurement ran at, as sampled by CLOCKS."""
    if not c or not c.get("mhz"):
        return "-"
    return "%.0f MHz%s" % (c["mhz"], ", %.0f W" % c["watts"] if c.get("watts") else "")


try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
except Exception:  # noqa: BLE001 - only a label
    gpu = "unknown GPU"
md = []
md.append("# Compute share (CUDA_DEVICE_SM_LIMIT)")
md.append("")
md.append("GPU: %s. %g s per measurement, after a 0.3 s warm-up; library `%s`%s." %
          (gpu, SECS, LIB, ", period %s ms (SOFTMIG_SM_PERIOD_MS)" % PERIOD_MS if PERIOD_MS else ""))
md.append("")
md.append("Relative share = rate with softmig and the limit / rate without softmig, same number of "
          "processes (2 processes: one job, both started together, rates summed; %s). Launch and "
          "train (host-bound): processes that stay up measure %g s at a time (after %d ms of warm-up), "
          "every configuration taking turns with the others in %d rounds of alternating order, each "
          "round with two bare turns; %d fresh sets of processes serve the rounds in turn; a cell is "
          "the mean of its turns, the reference the mean of the bare turns. Targets: "
          "|relative - limit| <= 0.05 (matmul 0.02); at 100 %% (no limit): >= 0.95, the 2 %% target "
          "on the launch load's cost being judged by tests/gpu/run.sh's in-process A/B (between sets of "
          "processes, this grid resolves about 5 %%); bandwidth is reported only." %
          ("each process pinned to two cores" if PIN else "not pinned", TURN_SECS, TURN_WARM_MS, ROUNDS, SETS))
md.append("")
md.append("| load | processes | 10 % | 25 % | 50 % | 75 % | 100 % | bare rate |")
md.append("|---|---|---|---|---|---|---|---|")
results = []
for load in LOADS:
    worst = None   # (severity, text)
    all_ok = True
    vals = []
    missing = 0
    for nproc in ([1, 2] if load in TWO else [1]):
        bare = bare_ref(load, nproc)
        row = ["%s" % load, "%d" % nproc]
        for mode in LIMITS:
            c = cells.get((load, nproc, mode))
            rel = c["rate"] / bare["rate"] if c and bare else None
            ok = cell_ok(load, mode, rel)
            skipped = "%s x%d limit %d" % (load, nproc, mode) in SKIPPED
            row.append(("skipped" if skipped else "-") + mark(ok) if rel is None else "%.3f%s" % (rel, mark(ok)))
            if ok is False:
                all_ok = False
            if rel is not None:
                vals.append("%d%%x%d %.3f" % (mode, nproc, rel))
                dev = rel - mode / 100.0
                sev = abs(dev) if mode != 100 else max(0.0, 0.95 - rel)
                if ok is False:
                    sev += 10  # a failing cell is always the worst
                if worst is None or sev > worst[0]:
                    worst = (sev, "%d %% x%d: %.3f (%+.3f)" % (mode, nproc, rel, dev))
            elif ok is False:
                missing += 1
        row.append(bare_text(load, bare))
        md.append("| " + " | ".join(row) + " |")
    b1 = bare_ref(load, 1)
    if load == "bandwidth":
        detail = "report only: %s; bare %s" % (", ".join(vals) or "no results", bare_text(load, b1))
        ok = None
    else:
        detail = "worst %s (tolerance %.2f); bare %s" % (worst[1] if worst else "-", tolerance(load), bare_text(load, b1))
        if missing:
            detail = "%d cells without a result; " % missing + detail
        ok = all_ok
    results.append({"name": "compute share " + load, "ok": ok, "detail": detail})

mm_bare = cells.get(("matmul", 1, "bare"))
if mm_bare and "busy" in mm_bare:
    md.append("")
    md.append("Matmul, one process: throughput and GPU time. GPU time share = GEMMs/s x the median GPU time "
              "of one GEMM (timing events between consecutive GEMMs): the share of the GPU's time the job's "
              "GEMMs took. A GEMM takes less GPU time when the card, idle the rest of the time, runs at a "
              "higher clock.")
    md.append("")
    md.append("| limit | relative throughput | GPU time share | GPU time of one GEMM | SM clock (median) |")
    md.append("|---|---|---|---|---|")
    md.append("| bare | 1.000 | %.3f | %.3f ms | %s |" % (mm_bare["busy"], mm_bare["unit_gpu_ms"], mhz_text(mm_bare)))
    busy_ok, busy_vals = True, []
    for pct in LIMITS:
        c = cells.get(("matmul", 1, pct))
        if not c or "busy" not in c:
            md.append("| %d %% | - | - | - | - |" % pct)
            busy_ok = busy_ok and pct == 100
            continue
        ok = abs(c["busy"] - pct / 100.0) <= tolerance("matmul") if pct < 100 else None
        busy_ok = busy_ok and ok is not False
        busy_vals.append("%d%% %.3f" % (pct, c["busy"]))
        md.append("| %d %% | %.3f | %.3f%s | %.3f ms | %s |" % (pct, c["rate"] / mm_bare["rate"], c["busy"], mark(ok),
                                                            c["unit_gpu_ms"], mhz_text(c)))
    results.append({"name": "compute share matmul GPU time", "ok": busy_ok,
                    "detail": "GPU time share %s (tolerance 0.02); one GEMM %.3f ms bare" %
                              (", ".join(busy_vals) or "no results", mm_bare["unit_gpu_ms"])})
if green:
    md.append("")
    md.append("The same matmul alone in a green context (a fixed subset of the SMs; no softmig), relative to "
              "bare: what a spatial slice of this card delivers.")
    md.append("")
    md.append("| SMs | fraction of the SMs | relative throughput | SM clock (median) |")
    md.append("|---|---|---|---|")
    for sms in sorted(green):
        g = green[sms]
        md.append("| %d | %s | %.3f | %s |" % (g["sms"], "-" if g["fraction"] is None else "%.3f" % g["fraction"],
                                              g["rel"], mhz_text(g)))

md.append("")
md.append("Host-bound loads against the pause control, in the same turns: the same load pausing itself "
          "outside its windows (SHARE_DUTY, no softmig), i.e. what any time-division share can give it "
          "on this machine; relative to the same bare turns:")
md.append("")
md.append("| load | processes | run | 10 % | 25 % | 50 % | 75 % |")
md.append("|---|---|---|---|---|---|---|")
for load in HOST:
    for nproc in ([1, 2] if load in TWO else [1]):
        bare = bare_ref(load, nproc)
        for label, prefix in (("softmig", ""), ("paused itself", "duty")):
            row = [load, str(nproc), label]
            for pct in LIMITS[:-1]:
                c = cells.get((load, nproc, "%s%d" % (prefix, pct) if prefix else pct))
                row.append("%.3f" % (c["rate"] / bare["rate"]) if c and bare else "-")
            md.append("| " + " | ".join(row) + " |")
        row = [load, str(nproc), "softmig / paused"]
        for pct in LIMITS[:-1]:
            a, b = cells.get((load, nproc, pct)), cells.get((load, nproc, "duty%d" % pct))
            row.append("%.3f" % (a["rate"] / b["rate"]) if a and b else "-")
        md.append("| " + " | ".join(row) + " |")

md.append("")
md.append("Two jobs at 50 %% each (phases 0 and 50, strict), together; each job's rate relative to one bare process "
          "(matmul: the mean of %d runs of fresh processes, each run listed with the SM clock it ran at; launch: "
          "processes that stay up, in %d rounds of turns with bare turns between them):" % (TWO_JOBS_RUNS, ROUNDS))
md.append("")
md.append("| load | job A | job B | sum | target | runs (A + B) |")
md.append("|---|---|---|---|---|---|")
for load in ("matmul", "launch"):
    r = two_jobs.get(load, {})
    rel = r.get("rel")
    tol = tolerance(load)
    ok = bool(rel) and all(abs(x - 0.5) <= tol for x in rel)
    runs = ", ".join("%.3f + %.3f%s" % (run["rel"][0], run["rel"][1],
                                        " (%.0f MHz)" % run["mhz"] if run.get("mhz") else "")
                     for run in r.get("runs", [])) or ("%d turns" % len(r["turns"]["A"]) if r.get("turns") else "-")
    if rel:
        md.append("| %s | %.3f | %.3f | %.3f | 0.50 ± %.2f each:%s | %s |" %
                  (load, rel[0], rel[1], sum(rel), tol, mark(ok), runs))
        if r.get("paused"):
            p = r["paused"]
            md.append("| %s, each pausing itself | %.3f | %.3f | %.3f | | same turns |" % (load, p[0], p[1], sum(p)))
        detail = "job A %.3f, job B %.3f of one bare process (target 0.50 ± %.2f; runs %s)" % (rel[0], rel[1], tol, runs)
        if r.get("paused"):
            detail += "; pausing themselves %.3f + %.3f" % tuple(r["paused"])
    else:
        md.append("| %s | - | - | - | 0.50 ± %.2f each:%s | - |" % (load, tol, mark(False)))
        detail = "no result"
    results.append({"name": "compute share two jobs " + load, "ok": ok, "detail": detail})


md.append("")
md.append("On a busy card: the job at 25 % or 50 % (phase 0) while a matmul job uses the rest of the "
          "GPU's time (the other phases); the job's rate relative to one bare process (launch and train: "
          "processes that stay up, in turns with bare turns between them, as for two jobs; their row "
          "\"paused itself\" is the same load pausing itself outside the same windows, without softmig, "
          "beside the same matmul job, in turns of its own: what any time-division share gives it there):")
md.append("")
md.append("| load | run | 25 % | 50 % |")
md.append("|---|---|---|---|")
for load in ("matmul", "launch", "train"):
    row = [load, "softmig"]
    for pct in (25, 50):
        rel = shared.get("%s %d" % (load, pct))
        ok = rel is not None and abs(rel - pct / 100.0) <= tolerance(load)
        row.append("-" if rel is None else "%.3f%s" % (rel, mark(ok)))
        paused_rel = shared_paused.get("%s %d" % (load, pct))
        results.append({"name": "compute share busy card %s %d" % (load, pct), "ok": ok,
                        "detail": "%s (target %.2f ± %.2f)%s" % (
                            "no result" if rel is None else "%.3f" % rel, pct / 100.0, tolerance(load),
                            "" if paused_rel is None else "; paused itself %.3f" % paused_rel)})
    md.append("| " + " | ".join(row) + " |")
    if load in HOST:
        md.append("| %s | paused itself | %s | %s |" % (load, f3(shared_paused.get("%s 25" % load)),
                                                        f3(shared_paused.get("%s 50" % load))))
        mm = [shared_matmul.get("%s %d" % (load, pct)) for pct in (25, 50)]
        if any(mm):
            md.append("| %s | the matmul job beside softmig / beside it paused (GEMM/s) | %s |" % (load, " | ".join(
                "%s / %s" % (human(m["job"]), human(m["paused"])) if m else "-" for m in mm)))


alone, before, during, lat = burst.get("alone"), burst.get("before"), burst.get("during"), burst.get("latency_ms")
ok_alone = alone is not None and alone >= 0.95
ok_before = before is not None and before >= 0.95
ok_during = during is not None and abs(during - 0.25) <= 0.05
md.append("")
md.append("Burst (matmul; relative to one bare process). Timeline run: job A (25 %, burst, phase 0) runs 4 s; "
          "job B (50 %, strict, phase 50) starts 2 s later. Fallback latency: from B's first GPU work until "
          "A's last GEMM that ended outside A's own windows (more than 5 ms past their end: A's queue at its "
          "close); \"never\" if A still used B's time in the last period that both ran.")
md.append("")
md.append("| case | value | target |")
md.append("|---|---|---|")
md.append("| A alone, 25 %% burst | %s | >= 0.95:%s |" % (f3(alone), mark(ok_alone)))
md.append("| A before B starts | %s | >= 0.95:%s |" % (f3(before), mark(ok_before)))
md.append("| A while B runs | %s | 0.25 ± 0.05:%s |" % (f3(during), mark(ok_during)))
md.append("| B (50 %%, strict) while A runs | %s | reported |" % f3(burst.get("b_rel")))
lat_text = "-" if "timeline" not in burst else "%.0f ms" % lat if burst.get("yielded") else "never"
ok_fallback = bool(burst.get("yielded")) and lat is not None and lat <= 100
md.append("| fallback latency | %s | <= 100 ms:%s |" % (lat_text, mark(ok_fallback)))
results.append({"name": "compute share burst", "ok": ok_alone and ok_before and ok_during and ok_fallback,
                "detail": "alone %s, before %s, during %s (target 0.25 ± 0.05), B %s, fallback %s (target <= 100 ms)" %
                          (f3(alone), f3(before), f3(during), f3(burst.get("b_rel")), lat_text)})

rel_ovh = overhead.get("relative")
md.append("")
md.append("Overhead: the launch load preloaded without a limit against bare, one process each, in the "
          "turns of the launch grid above; relative = mean / mean. Reported only: single turns of the "
          "same configuration differ by up to ~10 % on this VM, more than the 2 % to be shown; the "
          "verdict is tests/gpu/run.sh's in-process A/B of the launch path.")
md.append("")
md.append("| bare turns (launches/s) | preloaded turns (launches/s) | relative |")
md.append("|---|---|---|")
md.append("| %s | %s | %s |" % (", ".join(human(x) for x in overhead.get("bare", [])) or "-",
                                ", ".join(human(x) for x in overhead.get("preloaded", [])) or "-", f3(rel_ovh)))
results.append({"name": "compute share overhead (launch)", "ok": None,
                "detail": "report only: preloaded without a limit / bare %s over %d turns each (verdict: "
                          "launch overhead A/B)" % (f3(rel_ovh), len(overhead.get("preloaded", [])))})

total_s = BUILD_S + elapsed()
md.append("")
md.append("Measured in %.0f s (build %.0f s)." % (total_s, BUILD_S))
text = "\n".join(md) + "\n"
with open(os.path.join(OUT, "compute_share.md"), "w") as f:
    f.write(text)
DATA["results"] = results
DATA["seconds"] = total_s
with open(os.path.join(OUT, "compute_share.json"), "w") as f:
    json.dump(DATA, f, indent=1, sort_keys=True)
print()
print(text)
for r in results:
    r["check"] = "compute_share"
    print("RESULT " + json.dumps(r, sort_keys=True), flush=True)
print("compute share: done in %.0f s" % total_s, flush=True)
PY
