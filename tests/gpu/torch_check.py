# SPDX-License-Identifier: Apache-2.0
"""PyTorch under softmig. Modes:
  routes   no limit: a matmul and allocations give the same result as bare, and reach softmig
  slice    under CUDA_DEVICE_MEMORY_LIMIT: mem_get_info shows the slice; allocating until OOM
           raises torch.OutOfMemoryError near the slice size; the program carries on afterwards
  hold N   allocate N MiB, print READY, wait for stdin to close (for sharing/NVML checks)
"""
import os
import sys

import torch

from common import GiB, MiB, counts, fail, hook_calls, limit_bytes, report, route

mode = sys.argv[1]

if mode == "routes":
    torch.manual_seed(0)
    a = torch.randn(2048, 2048, device="cuda")
    b = torch.randn(2048, 2048, device="cuda")
    c = (a @ b).double().sum().item()
    blocks = [torch.empty(64 * MiB, dtype=torch.uint8, device="cuda") for _ in range(8)]
    del blocks
    torch.cuda.empty_cache()
    torch.cuda.synchronize()
    report("torch_routes", checksum=round(c, 3),
           calls=counts(["cuMemAlloc_v2", "cuMemFree_v2", "cuLaunchKernel", "cuLaunchKernelEx",
                         "cuMemGetInfo_v2", "cuDevicePrimaryCtxRetain", "cuGetProcAddress_v2",
                         "cuLibraryLoadData", "cuModuleLoadData"]),
           via_getprocaddress=route("cuGetProcAddress"), via_dlsym=route("dlsym"),
           unmapped=route("unmapped"))
elif mode == "slice":
    limit = limit_bytes()
    free, total = torch.cuda.mem_get_info()
    props_total = torch.cuda.get_device_properties(0).total_memory
    step = 256 * MiB
    held = []
    oom = False
    try:
        while True:
            held.append(torch.empty(step, dtype=torch.uint8, device="cuda"))
    except torch.OutOfMemoryError:
        oom = True
    got = len(held) * step
    del held
    torch.cuda.empty_cache()
    # The job continues normally after the OOM.
    x = torch.ones(64 * MiB // 4, device="cuda").sum().item()
    report("torch_slice", limit=limit, mem_get_info_total=total, mem_get_info_free=free,
           device_total=props_total, usable=got, oom_raised=oom, continued=(x == 64 * MiB // 4),
           expandable=os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
           cuMemCreate=hook_calls("cuMemCreate"))
elif mode == "hold":
    n = int(sys.argv[2]) * MiB
    try:
        t = torch.empty(n, dtype=torch.uint8, device="cuda")
        print("READY ok", flush=True)
    except torch.OutOfMemoryError:
        print("READY oom", flush=True)
    sys.stdin.read()
else:
    fail("unknown mode " + mode)
