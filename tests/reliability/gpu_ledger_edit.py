# SPDX-License-Identifier: Apache-2.0
"""The ledger-edit attempt of tamper.ledger-edits on a real GPU, with PyTorch (outside SLURM, so
the job's processes are the ledger's members). C holds 64 MiB and A 2500 MiB of a 4 GiB slice;
A's slot and the device totals are then zeroed in the ledger file; B (a new process) and C (a
process that was already running) each ask for 2500 MiB. Prints one RESULT line with NVML's view
of the job. Needs torch and pynvml; run from a GPU machine (docs/reliability.md):

    PYTHONPATH=tests/gpu python3 tests/reliability/gpu_ledger_edit.py build/lib/libsoftmig.so LABEL
"""
import mmap, os, struct, subprocess, sys, time
import pynvml

from common import session_ledger_path  # tests/gpu (PYTHONPATH)

lib, label = sys.argv[1], sys.argv[2]
session = "edit-%s-%d" % (label, os.getpid())
env = dict(os.environ, LD_PRELOAD=lib, CUDA_DEVICE_MEMORY_LIMIT="4G", SOFTMIG_SESSION=session)
HOLD = r'''
import sys, torch
n = int(sys.argv[1]) << 20
try:
    t = torch.empty(n, dtype=torch.uint8, device="cuda"); print("READY ok", flush=True)
except torch.OutOfMemoryError:
    print("READY oom", flush=True)
for line in sys.stdin:
    m = int(line) << 20
    try:
        u = torch.empty(m, dtype=torch.uint8, device="cuda"); print("MORE ok", flush=True)
    except torch.OutOfMemoryError:
        print("MORE oom", flush=True)
'''
def start(mib):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(mib)], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    return p, p.stdout.readline().strip()

def ledger_path():
    return session_ledger_path(session)

def zero(pid):
    with open(ledger_path(), "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
        for d in range(16):
            struct.pack_into("<Q", m, 192 + d * 112 + 56, 0)          # devices[d].used
        for s in range(1024):
            off = 192 + 16 * 112 + s * 320
            if struct.unpack_from("<Q", m, off)[0] == pid:
                m[off + 32: off + 288] = bytes(256)                  # alloc[16], overhead[16]
        m.close()

pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
def job_mib(pids):
    return sum(p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h) if p.pid in pids) >> 20

c, c_ready = start(64)          # C: running before the edit
a, a_ready = start(2500)        # A: holds most of the slice
zero(a.pid)
b, b_ready = start(2500)        # B: a new process after the edit
c.stdin.write("2500\n"); c.stdin.flush()
c_more = c.stdout.readline().strip()
time.sleep(0.5)
total = job_mib({a.pid, b.pid, c.pid})
print("RESULT %s: A %s, then after zeroing A's slot and the totals: new process B %s, running process C %s; "
      "job uses %d MiB of 4096 (NVML)" % (label, a_ready, b_ready, c_more, total), flush=True)
for p in (a, b, c):
    p.stdin.close(); p.wait()
