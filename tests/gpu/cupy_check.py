# SPDX-License-Identifier: Apache-2.0
"""CuPy under softmig: routes or slice (allocation until OutOfMemoryError)."""
import sys

import cupy as cp

from common import MiB, counts, limit_bytes, report, route

mode = sys.argv[1]
if mode == "routes":
    cp.random.seed(0)
    a = cp.random.standard_normal((2048, 2048), dtype=cp.float64)
    c = float((a @ a).sum())
    report("cupy_routes", checksum=round(c, 3),
           calls=counts(["cuMemAlloc_v2", "cuLaunchKernel", "cuMemGetInfo_v2", "cuGetProcAddress_v2",
                         "cuModuleLoadData", "cuLibraryLoadData"]),
           via_getprocaddress=route("cuGetProcAddress"), via_dlsym=route("dlsym"),
           unmapped=route("unmapped"))
else:
    limit = limit_bytes()
    free, total = cp.cuda.runtime.memGetInfo()
    held = []
    oom = False
    try:
        while True:
            held.append(cp.empty(256 * MiB, dtype=cp.uint8))
    except cp.cuda.memory.OutOfMemoryError:
        oom = True
    report("cupy_slice", limit=limit, mem_get_info_total=total, usable=len(held) * 256 * MiB, oom_raised=oom)
