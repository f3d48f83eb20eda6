# SPDX-License-Identifier: Apache-2.0
"""JAX under softmig: routes (same result as bare, calls reach softmig) or slice (allocating
until the allocator refuses stays within the slice)."""
import os
import sys

import jax
import jax.numpy as jnp

from common import MiB, counts, limit_bytes, report, route

mode = sys.argv[1]
if mode == "routes":
    k = jax.random.PRNGKey(0)
    a = jax.random.normal(k, (2048, 2048))
    c = float(jnp.sum((a @ a).astype(jnp.float64) if jax.config.read("jax_enable_x64") else (a @ a)))
    report("jax_routes", checksum=round(c, 1),
           calls=counts(["cuMemAlloc_v2", "cuLaunchKernel", "cuMemGetInfo_v2", "cuMemCreate",
                         "cuGetProcAddress_v2", "cuLibraryLoadData", "cuModuleLoadData"]),
           via_getprocaddress=route("cuGetProcAddress"), via_dlsym=route("dlsym"),
           unmapped=route("unmapped"))
else:
    limit = limit_bytes()
    held = []
    err = ""
    try:
        while True:
            held.append(jnp.ones((256 * MiB // 4,), dtype=jnp.float32).block_until_ready())
    except Exception as e:  # XlaRuntimeError: RESOURCE_EXHAUSTED
        err = type(e).__name__ + ": " + str(e).splitlines()[0][:120]
    got = len(held) * 256 * MiB
    stats = jax.devices()[0].memory_stats() or {}
    report("jax_slice", limit=limit, usable=got, error=err,
           preallocate=os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "default"),
           bytes_limit=stats.get("bytes_limit"))
