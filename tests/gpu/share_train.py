# SPDX-License-Identifier: Apache-2.0
"""The "train" load of the compute-share benchmark (tests/gpu/compute_share.sh): a small PyTorch
training loop, a 4-layer MLP 1024 wide in bf16, batch 512 of fixed random data, SGD with momentum.
Usage: share_train.py SECONDS. Unit = 1 optimizer step. The SGD step is written out with the
foreach kernels torch.optim.SGD(foreach=True) uses: creating a torch.optim optimizer imports
torch._dynamo, which takes ~5 s on the H100 machine, more than a whole measurement.

Output, as share_bench: READY (only with SHARE_WAIT_GO=1, then one line is read from stdin),
BEGIN <monotonic ns>, START <monotonic ns>, and last `SHARE load=train units=N seconds=S rate=R`.
Model, data and five steps are set up before READY (cuBLAS and the allocator warm), so unlike
share_bench some GPU work happens before BEGIN.
SHARE_DUTY=P: pause outside the first P % of every 200 ms (softmig's default; SHARE_DUTY_PERIOD_MS),
without softmig
(as share_bench).
SHARE_SERVE=1: after the SHARE line, read a line and, if it is "go", measure again (as share_bench)."""
import os
import sys
import time

T_PROCESS = time.monotonic()
import torch  # noqa: E402 (the time to import it is reported as import_s)

T_IMPORTED = time.monotonic()
T_SETUP = [T_IMPORTED]


def duty_wait(open_ns, period_ns, spin_ns=200_000):
    """Outside the window: finish queued work, then sleep to just before the next window."""
    t = time.monotonic_ns()
    if t % period_ns < open_ns:
        return
    torch.cuda.synchronize()
    until = (t // period_ns + 1) * period_ns
    while True:
        t = time.monotonic_ns()
        if t >= until:
            return
        if until - t > spin_ns:
            time.sleep(min(until - t - spin_ns, 5_000_000) / 1e9)
        else:
            os.sched_yield()


def main():
    seconds = float(sys.argv[1])
    duty = int(os.environ.get("SHARE_DUTY", "0") or 0)
    period_ns = max(10, int(os.environ.get("SHARE_DUTY_PERIOD_MS", "200") or 200)) * 1_000_000
    open_ns = period_ns * duty // 100 if 0 < duty < 100 else 0
    dev = torch.device("cuda", 0)
    torch.manual_seed(0)
    width = 1024
    model = torch.nn.Sequential(
        torch.nn.Linear(1024, width), torch.nn.ReLU(),
        torch.nn.Linear(width, width), torch.nn.ReLU(),
        torch.nn.Linear(width, width), torch.nn.ReLU(),
        torch.nn.Linear(width, 10),
    ).to(device=dev, dtype=torch.bfloat16)
    x = torch.randn(512, 1024, device=dev, dtype=torch.bfloat16)
    y = torch.randint(0, 10, (512,), device=dev)
    params = list(model.parameters())
    momentum = [torch.zeros_like(p) for p in params]
    lr = 1e-3
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        for p in params:
            p.grad = None
        loss = loss_fn(model(x).float(), y)
        loss.backward()
        with torch.no_grad():  # SGD, momentum 0.9: buf = 0.9 * buf + grad; p -= lr * buf
            torch._foreach_mul_(momentum, 0.9)
            torch._foreach_add_(momentum, [p.grad for p in params])
            torch._foreach_add_(params, momentum, alpha=-lr)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    T_SETUP[0] = time.monotonic()

    if os.environ.get("SHARE_WAIT_GO", "0") not in ("", "0"):
        print("READY", flush=True)
        sys.stdin.readline()

    serve = os.environ.get("SHARE_SERVE", "0") == "1"
    while True:
        measure(step, seconds, open_ns, period_ns)
        if not serve or not sys.stdin.readline().startswith("go"):
            break


def measure(step, seconds, open_ns, period_ns):
    """BEGIN, a warm-up (SHARE_WARM_MS, default 300), START, `seconds` of steps, SHARE."""
    print("BEGIN %d" % time.monotonic_ns(), flush=True)
    warm_end = time.monotonic_ns() + int(os.environ.get("SHARE_WARM_MS", "300")) * 1_000_000
    while time.monotonic_ns() < warm_end:
        step()
    torch.cuda.synchronize()

    t0 = time.monotonic_ns()
    print("START %d" % t0, flush=True)
    deadline = t0 + int(seconds * 1e9)
    steps = 0
    while time.monotonic_ns() < deadline:
        if open_ns:
            duty_wait(open_ns, period_ns)
        step()
        steps += 1
    torch.cuda.synchronize()
    t1 = time.monotonic_ns()
    elapsed = (t1 - t0) / 1e9
    rate = steps / elapsed
    print("SHARE load=train units=%d seconds=%.4f rate=%.3f ms_per_unit=%.4f import_s=%.2f setup_s=%.2f" %
          (steps, elapsed, rate, 1000.0 / rate if steps else 0.0, T_IMPORTED - T_PROCESS, T_SETUP[0] - T_IMPORTED),
          flush=True)


if __name__ == "__main__":
    main()
