# SPDX-License-Identifier: Apache-2.0
"""Turns tests/gpu/run.sh result lines into the summary table and a pass/fail verdict."""
import json
import math
import statistics
import sys
from collections import defaultdict

GiB = 1 << 30
MiB = 1 << 20
rows = []   # (check, verdict, detail)
bench = defaultdict(lambda: defaultdict(list))
results = defaultdict(list)
gpu = ""
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("GPU "):
        gpu = line[4:]
        continue
    parts = line.split(" ", 2)
    if len(parts) < 3:
        continue
    label, kind, rest = parts
    if kind == "BENCH":
        name, value = rest.split()
        bench[name][label].append(float(value))
    elif kind == "RESULT":
        r = json.loads(rest)
        results[(label, r["check"])].append(r)


def get(label, check):
    v = results.get((label, check))
    return v[-1] if v else None


def verdict(ok):
    return "PASS" if ok else "FAIL"


# Routes: same results, calls counted, nothing unmapped. "Same" to float32 rounding: XLA may pick
# another GEMM or reduction order from one run to the next (JAX's 2048x2048 sum read 162344.2 bare
# and 162344.3 preloaded without a limit, 6e-7 apart); work that did not run, or ran on wrong
# data, differs by far more.
SAME_REL = 1e-5
for fw in ("runtime", "torch", "jax", "cupy"):
    b, p = get("bare", fw + "_routes"), get("preloaded", fw + "_routes")
    if not b or not p:
        rows.append((fw + " routes", "FAIL", "missing result"))
        continue
    reached = sum(v for v in p.get("calls", {}).values()) if "calls" in p else p.get("cuMemAlloc_v2", 0)
    same = math.isclose(b["checksum"], p["checksum"], rel_tol=SAME_REL)
    ok = same and reached > 0 and p.get("unmapped", 0) == 0
    rows.append((fw + " routes", verdict(ok),
                 "checksum %s %s %s, calls seen %d, via cuGetProcAddress %s, unmapped %s" %
                 (b["checksum"], "!=" if not same else "==" if b["checksum"] == p["checksum"] else "~=", p["checksum"], reached, p.get("via_getprocaddress", "-"), p.get("unmapped", 0))))
d = get("preloaded", "driver_routes")
rows.append(("driver API routes", verdict(bool(d and d["ok"])), json.dumps(d) if d else "missing"))

bare_slice = get("bare", "driver_slice")
ctx = get("slice-4G", "context")
ctx_bytes = ctx["nvml_bytes_for_1MiB_tensor"] if ctx else 600 * MiB
for size, lim in (("1G", GiB), ("4G", 4 * GiB), ("16G", 16 * GiB)):
    r = get("slice-" + size, "driver_slice")
    if not r:
        rows.append(("driver slice " + size, "FAIL", "missing"))
        continue
    ok = r["total"] == lim and r["error"] == 2 and r["usable"] <= lim and r["usable"] >= lim - ctx_bytes - 256 * MiB
    rows.append(("driver slice " + size, verdict(ok), "total %.0f MiB, usable %.0f MiB, error %d" %
                 (r["total"] / MiB, r["usable"] / MiB, r["error"])))
for check, name in (("torch_slice", "torch 4G"), ("cupy_slice", "cupy 4G")):
    for r in results.get(("slice-4G", check), []):
        tag = name + (" expandable" if r.get("expandable") else "")
        ok = r["usable"] <= 4 * GiB and r["usable"] >= 4 * GiB - ctx_bytes - 256 * MiB and r.get("oom_raised", False)
        if "mem_get_info_total" in r:
            ok = ok and r["mem_get_info_total"] == 4 * GiB
        if "continued" in r:
            ok = ok and r["continued"]
        rows.append((tag, verdict(ok), "mem_get_info total %.0f MiB, usable %.0f MiB, OOM raised %s%s" %
                     (r.get("mem_get_info_total", 0) / MiB, r["usable"] / MiB, r.get("oom_raised"),
                      ", cuMemCreate calls %d" % r["cuMemCreate"] if r.get("expandable") else "")))
for r in results.get(("slice-4G", "jax_slice"), []):
    ok = r["usable"] <= 4 * GiB and r["usable"] > 0
    rows.append(("jax 4G prealloc=" + r["preallocate"], verdict(ok),
                 "usable %.0f MiB, bytes_limit %s, %s" % (r["usable"] / MiB, r["bytes_limit"], r["error"][:60])))
s = get("slice-4G", "share")
rows.append(("two processes, one 4G slice", verdict(bool(s and s["ok"])), json.dumps(s) if s else "missing"))
n = get("slice-4G", "nvidia_smi")
if n:
    total = int(n["inside"].split(",")[0]) if n["inside"] else -1
    rows.append(("nvidia-smi in slice", verdict(total == 4096 and n["apps_inside"] <= n["apps_outside"]),
                 "inside '%s' (apps %d), outside '%s' (apps %d)" % (n["inside"], n["apps_inside"], n["outside"], n["apps_outside"])))
a = get("slice-4G", "nvml_agreement")
if a:
    rows.append(("NVML vs ledger", verdict(a["diff_pct"] <= 2.0),
                 "NVML %.0f MiB, ledger %.0f MiB, diff %.2f %%" % (a["nvml_job_bytes"] / MiB, a["ledger_bytes"] / MiB, a["diff_pct"])))
ch = get("slice-8G", "chaos")
if ch:
    rows.append(("chaos, torch, 8G slice", verdict(ch["ok"]),
                 "%d kills %s in %.0f s; then 2048+4608 MiB holders %s; ledger %.0f MiB vs NVML %.0f MiB (%.2f %%)" %
                 (ch["kills"], json.dumps(ch["by_kind"]), ch["seconds"], ch["holders"],
                  ch["ledger_live_bytes"] / MiB, ch["nvml_bytes"] / MiB, ch["diff_pct"])))
st = get("slice-4G", "status_vs_nvidia_smi")
if st:
    rows.append(("softmig status vs nvidia-smi", verdict(st["diff_pct"] <= 2.0),
                 "status %.0f MiB, nvidia-smi %.0f MiB, diff %.2f %%" %
                 (st["status_bytes"] / MiB, st["nvidia_smi_bytes"] / MiB, st["diff_pct"])))
# Compute share (compute_share.sh): one row per result, each carrying its own name and verdict.
for r in results.get(("compute-share", "compute_share"), []):
    rows.append((r["name"], "INFO" if r["ok"] is None else verdict(r["ok"]), r["detail"]))
if ctx:
    rows.append(("context memory (torch)", "INFO", "%.0f MiB per process" % (ctx_bytes / MiB)))
if bare_slice:
    rows.append(("bare driver", "INFO", "total %.0f MiB, usable %.0f MiB" % (bare_slice["total"] / MiB, bare_slice["usable"] / MiB)))

print("\nsoftmig GPU checks on: " + gpu)
w = max(len(r[0]) for r in rows)
for c, v, dtl in rows:
    print("%-*s  %-4s  %s" % (w, c, v, dtl))
if bench:
    print("\nbenchmark (median of per-round medians, rounds interleaved bare / preloaded)")
    for name in sorted(bench):
        base = statistics.median(bench[name]["bench-bare"]) if bench[name]["bench-bare"] else float("nan")
        for label in ("bench-bare", "bench-nolimit", "bench-limit70G"):
            vals = bench[name][label]
            if not vals:
                continue
            m = statistics.median(vals)
            print("  %-14s %-15s %10.1f ns  (%+.1f ns, %+.2f %%)  rounds: %s" %
                  (name, label, m, m - base, 100.0 * (m - base) / base, ", ".join("%.0f" % v for v in vals)))
ab = [(lbl, get(lbl, "launch_ab"))
      for lbl in ("bench-ab-bare", "bench-ab-nolimit", "bench-ab-limit70G", "bench-ab-share100", "bench-ab-share99")]
ab = [(lbl, r) for lbl, r in ab if r]
if ab:
    print("\ncuLaunchKernel in one process, alternating batches of 256 (program's path vs driver's own function)")
    for lbl, r in ab:
        print("  %-18s program path %7.1f ns, driver direct %7.1f ns, added %+.2f %%%s" %
              (lbl, r["through_program_path_ns"], r["driver_direct_ns"], r["added_pct"],
               " (same function: not interposed)" if r["same_function"] else ""))
    for lbl, r in ab:
        # The target is for a process without a compute share (a limit of 100 is none); a share's
        # paced path is reported.
        if lbl in ("bench-ab-nolimit", "bench-ab-limit70G", "bench-ab-share100"):
            row = ("launch overhead " + lbl[9:], verdict(r["added_pct"] <= 2.0 and not r["same_function"]),
                   "%+.2f %% per cuLaunchKernel (target <= 2 %%)" % r["added_pct"])
            rows.append(row)
            print("  %s  %s  %s" % row)
fails = [r for r in rows if r[1] == "FAIL"]
print("\n%d passed, %d failed" % (sum(1 for r in rows if r[1] == "PASS"), len(fails)))
sys.exit(1 if fails else 0)
