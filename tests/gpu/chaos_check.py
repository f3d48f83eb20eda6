# SPDX-License-Identifier: Apache-2.0
"""A shortened chaos run with real PyTorch processes in one 8 GiB slice: workers allocate and
free at random while they are killed at random instants (SIGKILL, SIGSEGV, or their own _exit).
Afterwards NVML's view of the job's live processes (read without softmig) must agree with the
ledger, and a fresh process must obtain the whole slice again: no byte lost.
Usage: chaos_check.py LIBSOFTMIG [KILLS]"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pynvml

from common import session_ledger_path

MiB = 1 << 20
lib = sys.argv[1]
kills_wanted = int(sys.argv[2]) if len(sys.argv) > 2 else 100
session = "chaos-%d" % os.getpid()
env = dict(os.environ, LD_PRELOAD=lib, CUDA_DEVICE_MEMORY_LIMIT="8G", SOFTMIG_SESSION=session)
random.seed(7)

WORKER = r"""
import os, random, sys, time, torch
random.seed(int(sys.argv[1]))
held = []
torch.zeros(1, device="cuda")
print("UP", flush=True)
while True:
    if held and random.random() < 0.4:
        held.pop(random.randrange(len(held)))
    else:
        try:
            held.append(torch.empty(random.randint(16, 512) * 2**20, dtype=torch.uint8, device="cuda"))
        except torch.OutOfMemoryError:
            held.clear()
            torch.cuda.empty_cache()
    if random.random() < 0.3:
        torch.cuda.empty_cache()
    if random.random() < 0.01:
        os._exit(3)
    time.sleep(random.random() * 0.01)
"""

HOLD = r"""
import sys, torch
n = int(sys.argv[1]) * 2**20
try:
    t = torch.empty(n, dtype=torch.uint8, device="cuda"); print("READY ok", flush=True)
except torch.OutOfMemoryError:
    print("READY oom", flush=True)
sys.stdin.read()
"""


def ledger_path():
    return session_ledger_path(session)


def ledger_live(uuid):
    """Bytes held by live processes on `uuid`, from the ledger's slots."""
    with open(ledger_path(), "rb") as f:
        data = f.read()
    dev = None
    for i in range(16):
        off = 192 + i * 112
        if data[off:off + 48].split(b"\0")[0].decode() == uuid:
            dev = i
    total, pids = 0, []
    for s in range(1024):
        off = 192 + 16 * 112 + s * 320
        pid = int.from_bytes(data[off:off + 8], "little")
        if pid == 0 or not os.path.exists("/proc/%d" % pid):
            continue
        a = int.from_bytes(data[off + 32 + 8 * dev:off + 40 + 8 * dev], "little")
        o = int.from_bytes(data[off + 160 + 8 * dev:off + 168 + 8 * dev], "little")
        total += a + o
        pids.append(pid)
    return total, pids


workers = []
kills = {"SIGKILL": 0, "SIGSEGV": 0, "exit": 0}
start = time.time()


def spawn():
    p = subprocess.Popen([sys.executable, "-c", WORKER, str(random.randrange(1 << 30))], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers.append(p)


for _ in range(8):
    spawn()
while sum(kills.values()) < kills_wanted and time.time() - start < 240:
    time.sleep(random.uniform(0.2, 1.4))
    for p in list(workers):
        if p.poll() is not None:  # a worker that left through _exit
            workers.remove(p)
            kills["exit"] += 1
            spawn()
    # Mostly the oldest worker (past its start-up, busy allocating), sometimes any.
    victim = workers[0] if random.random() < 0.8 else random.choice(workers)
    sig = random.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGSEGV])
    victim.send_signal(sig)
    victim.wait(timeout=60)
    workers.remove(victim)
    kills[sig.name] += 1
    spawn()
for p in workers:
    p.kill()
    p.wait(timeout=60)
elapsed = time.time() - start

pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
uuid = pynvml.nvmlDeviceGetUUID(h)
uuid = uuid.decode() if isinstance(uuid, bytes) else uuid

# Two fresh processes hold known amounts; NVML and the ledger must agree on them, and together
# they must be able to fill the slice (8 GiB minus two contexts, in whole 256 MiB steps).
holders = []
for mib in (2048, 4608):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(mib)], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    holders.append((p, p.stdout.readline().strip()))
time.sleep(1.0)
procs = {q.pid: q.usedGpuMemory for q in pynvml.nvmlDeviceGetComputeRunningProcesses(h)}
ledger_bytes, live = ledger_live(uuid)
nvml_bytes = sum(procs.get(pid, 0) or 0 for pid in live)
for p, _ in holders:
    p.stdin.close()
    p.wait(timeout=60)
ok_holders = [r for _, r in holders]
result = {"check": "chaos", "kills": sum(kills.values()), "by_kind": kills, "seconds": round(elapsed, 1),
          "holders": ok_holders, "ledger_live_bytes": ledger_bytes, "nvml_bytes": nvml_bytes,
          "diff_pct": round(100.0 * abs(ledger_bytes - nvml_bytes) / max(nvml_bytes, 1), 2)}
result["ok"] = (result["kills"] >= kills_wanted and ok_holders == ["READY ok", "READY ok"]
                and result["diff_pct"] <= 2.0)
print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
