# SPDX-License-Identifier: Apache-2.0
"""Two processes of one job under one 4 GiB slice; nvidia-smi inside the job; NVML (read
without softmig) against the job's ledger. Usage: share_check.py LIBSOFTMIG"""
import json
import os
import subprocess
import sys
import time

import pynvml

from common import MiB, session_ledger_path

lib = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
session = "share-%d" % os.getpid()
env = dict(os.environ, LD_PRELOAD=lib, CUDA_DEVICE_MEMORY_LIMIT="4G", SOFTMIG_SESSION=session)
bare_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "CUDA_DEVICE_MEMORY_LIMIT")}


def result(check, **kw):
    kw["check"] = check
    print("RESULT " + json.dumps(kw, sort_keys=True), flush=True)


def hold(mib):
    p = subprocess.Popen([sys.executable, os.path.join(here, "torch_check.py"), "hold", str(mib)],
                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    return p, line.split()[-1] if line.startswith("READY") else "error:" + line


def ledger_path():
    return session_ledger_path(session)


def ledger_devices(path):
    with open(path, "rb") as f:
        data = f.read(192 + 16 * 112)
    out = {}
    for i in range(16):
        off = 192 + i * 112
        uuid = data[off:off + 48].split(b"\0")[0].decode()
        if uuid:
            used = int.from_bytes(data[off + 56:off + 64], "little")
            out[uuid] = used
    return out


a, ra = hold(3000)
b, rb = hold(3000)
time.sleep(1.0)
result("share", first=ra, second=rb, ok=sorted([ra, rb]) == ["ok", "oom"])

q = ["nvidia-smi", "--query-gpu=memory.total,memory.used", "--format=csv,noheader,nounits"]
inside = subprocess.run(q, env=env, capture_output=True, text=True).stdout.strip()
outside = subprocess.run(q, env=bare_env, capture_output=True, text=True).stdout.strip()
apps_q = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
apps_inside = subprocess.run(apps_q, env=env, capture_output=True, text=True).stdout.strip().splitlines()
apps_outside = subprocess.run(apps_q, env=bare_env, capture_output=True, text=True).stdout.strip().splitlines()

pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
uuid = pynvml.nvmlDeviceGetUUID(h)
uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
procs = {p.pid: p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)}
job_pids = [a.pid, b.pid]
nvml_job = sum(procs.get(p, 0) or 0 for p in job_pids)
ledger = ledger_devices(ledger_path()).get(uuid, -1)
result("nvidia_smi", inside=inside, outside=outside, apps_inside=len(apps_inside),
       apps_outside=len(apps_outside))
result("nvml_agreement", nvml_job_bytes=nvml_job, ledger_bytes=ledger,
       diff_pct=round(100.0 * abs(nvml_job - ledger) / max(nvml_job, 1), 2))
# softmig status (the admin's view) against nvidia-smi's used memory of the job's processes.
tool = os.environ.get("SOFTMIG_TOOL")
if tool and os.path.exists(tool):
    st = subprocess.run([tool, "status", "--json", "--ledger", ledger_path()], capture_output=True, text=True)
    status_used = -1
    try:
        for job in json.loads(st.stdout)["jobs"]:
            for g in job["gpus"]:
                if g["uuid"] == uuid:
                    status_used = g["memory_used_bytes"]
    except (ValueError, KeyError):
        pass
    smi_job = 0
    for line in apps_outside:
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 2 and fields[0].isdigit() and int(fields[0]) in job_pids:
            smi_job += int(fields[1]) * MiB
    result("status_vs_nvidia_smi", status_bytes=status_used, nvidia_smi_bytes=smi_job,
           diff_pct=round(100.0 * abs(status_used - smi_job) / max(smi_job, 1), 2))
    capture = os.environ.get("SOFTMIG_CAPTURE")
    if capture:
        table = subprocess.run([tool, "status", "--ledger", ledger_path()], capture_output=True, text=True)
        watch = subprocess.run([tool, "status", "--watch", "--count", "1", "--ledger", ledger_path()],
                               capture_output=True, text=True)
        with open(capture, "w") as f:
            f.write("$ softmig status\n" + table.stdout + "\n$ softmig status --watch (one refresh, escape codes removed)\n")
            import re
            f.write(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", watch.stdout))
for p in (a, b):
    p.stdin.close()
    p.wait(timeout=60)

# Memory the driver takes for one process's context (PyTorch), as NVML reports it.
c, rc = hold(1)
procs = {p.pid: p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)}
result("context", nvml_bytes_for_1MiB_tensor=procs.get(c.pid, 0))
c.stdin.close()
c.wait(timeout=60)
