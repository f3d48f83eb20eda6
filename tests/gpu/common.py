# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the GPU checks: what the preloaded library counted, and result lines."""
import ctypes
import json
import os
import sys

_lib = ctypes.CDLL(None)


def softmig_loaded():
    try:
        _lib.softmig_version
        return True
    except AttributeError:
        return False


def hook_calls(symbol):
    if not softmig_loaded():
        return 0
    f = _lib.softmig_hook_calls
    f.restype = ctypes.c_ulonglong
    return f(symbol.encode())


def route(name):
    if not softmig_loaded():
        return 0
    f = _lib.softmig_route_count
    f.restype = ctypes.c_ulonglong
    return f(name.encode())


def report(check, **fields):
    """One machine-readable line per result; run.sh collects them into the summary table."""
    fields["check"] = check
    fields["preloaded"] = softmig_loaded()
    print("RESULT " + json.dumps(fields, sort_keys=True), flush=True)


def counts(symbols):
    return {s: hook_calls(s) for s in symbols}


MiB = 1 << 20
GiB = 1 << 30


def session_ledger_path(session):
    """The ledger the library keeps for SOFTMIG_SESSION=`session` outside SLURM."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    d = os.path.join(base, "softmig") if base and os.path.isdir(base) else "/tmp/softmig-%d" % os.geteuid()
    return os.path.join(d, "cudevshr.cache.session-" + session)


def limit_bytes():
    v = os.environ.get("CUDA_DEVICE_MEMORY_LIMIT")
    if not v:
        return None
    units = {"k": 10, "m": 20, "g": 30, "t": 40}
    v = v.strip().lower().rstrip("ib").rstrip("b")
    if v[-1] in units:
        return int(float(v[:-1]) * (1 << units[v[-1]]))
    return int(v)


def fail(msg):
    print("FAIL " + msg, file=sys.stderr, flush=True)
    sys.exit(1)
