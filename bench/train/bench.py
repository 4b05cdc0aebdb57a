"""Benchmark of CudaTrainer: many softmax adapters trained at once, side by side with the anchors.

CPU part (runs everywhere): 100 adapters x 2,000 rows x 256 features x 8 classes x 10 epochs, hidden=0,
against scikit-learn's LogisticRegression fitted once per adapter with the same L2 penalty
(sklearn minimises C*sum(CE) + |W|^2/2, the trainer mean(CE) + l2/2*|W|^2, so l2 = 1/(C*rows)).
Accuracy is measured on 500 held-out rows per adapter drawn from the same distribution. Host peak memory
is the process's peak resident set during fit() above its size before the data was made, divided by the
bytes of the data (X and y).

GPU part (needs a CUDA GPU and PyTorch): 1,000 adapters x 2,000 rows x 768 features x 8 classes x 10
epochs against a PyTorch loop over adapters and a batched PyTorch ensemble (torch.bmm over all adapters),
and against the memory-bandwidth floor (bytes of X read per epoch / device bandwidth measured here).

    python bench/train/bench.py            # both parts (the GPU part says why it is skipped)
    python bench/train/bench.py --quick    # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time

import numpy as np

import mlops

CLASS_SPREAD = 0.2


def rss_bytes(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def make_task(rng, rows, test_rows, d, k):
    centres = (rng.normal(0.0, 1.0, (k, d)) * CLASS_SPREAD).astype(np.float32)
    y = rng.integers(0, k, rows).astype(np.int32)
    X = centres[y] + rng.normal(0.0, 1.0, (rows, d)).astype(np.float32)
    yt = rng.integers(0, k, test_rows).astype(np.int32)
    Xt = centres[yt] + rng.normal(0.0, 1.0, (test_rows, d)).astype(np.float32)
    return np.ascontiguousarray(X, dtype=np.float32), y, np.ascontiguousarray(Xt, dtype=np.float32), yt


def table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


# ---- CPU ----------------------------------------------------------------------------------------------


def cpu_part(args) -> None:
    from sklearn.linear_model import LogisticRegression

    A, n, d, k, epochs = args.adapters, args.rows, args.features, args.classes, args.epochs
    C = args.C
    l2 = 1.0 / (C * n)
    print(f"\n== CPU: {A} adapters x {n} rows x {d} features x {k} classes x {epochs} epochs, hidden=0 ==")
    print(f"threads={args.threads or os.cpu_count()}, batch_size={args.batch_size}, adam lr={args.lr}, l2={l2:.3g} (C={C})")
    gc.collect()
    base = rss_bytes()
    rng = np.random.default_rng(0)
    datasets, tests = [], []
    for i in range(A):
        X, y, Xt, yt = make_task(rng, n, args.test_rows, d, k)
        datasets.append(mlops.Dataset(X, y))  # copies; the NumPy arrays are dropped here
        tests.append((Xt, yt))
        del X, y
    gc.collect()
    data_bytes = A * n * (d * 4 + 4)
    specs = [
        mlops.AdapterSpec(name=f"adapter-{i:04d}", dataset=ds, epochs=epochs, batch_size=args.batch_size,
                          learning_rate=args.lr, l2=l2, validation_fraction=0.0)
        for i, ds in enumerate(datasets)
    ]
    trainer = mlops.CudaTrainer(device="cpu", seed=0, threads=args.threads, progress=False)
    have_peak = reset_peak_rss()
    t0 = time.perf_counter()
    trained = trainer.fit(specs)
    t_mlops = time.perf_counter() - t0
    peak = rss_bytes("VmHWM") if have_peak else rss_bytes()
    acc_mlops = [float(np.mean(t.adapter.predict_indices(Xt) == yt)) for t, (Xt, yt) in zip(trained, tests)]

    sample = min(A, args.sklearn_adapters or A)
    acc_sk = []
    t0 = time.perf_counter()
    for i in range(sample):
        ds = datasets[i]
        m = LogisticRegression(C=C, max_iter=1000).fit(ds.X, ds.y)
        acc_sk.append(float(m.score(*tests[i])))
    t_sk_measured = time.perf_counter() - t0
    t_sk = t_sk_measured * A / sample

    acc_m = float(np.mean(acc_mlops))
    acc_s = float(np.mean(acc_sk))
    acc_m_same = float(np.mean(acc_mlops[:sample]))
    sk_note = "" if sample == A else f" (measured {sample}, scaled to {A})"
    rows = [
        ["mlops CudaTrainer (cpu)", f"{t_mlops:.2f}", f"{A / t_mlops:.1f}", f"{acc_m:.4f}", f"{t_sk / t_mlops:.1f}x"],
        ["sklearn LogisticRegression" + sk_note, f"{t_sk:.2f}", f"{A / t_sk:.1f}", f"{acc_s:.4f}", "1.0x"],
    ]
    table(rows, ["backend", "seconds", "adapters/s", "held-out acc", "speed vs sklearn"])
    print(f"accuracy gap (mlops - sklearn, same {sample} adapters): {100 * (acc_m_same - acc_s):+.2f} points")
    grow = peak - base
    print(f"host memory: data {data_bytes / 2**20:.1f} MiB; peak RSS during fit {peak / 2**20:.1f} MiB, "
          f"{grow / 2**20:.1f} MiB above the process before the data = {grow / data_bytes:.2f}x the data"
          + ("" if have_peak else " (peak reset unavailable: RSS after fit)"))


# ---- GPU ----------------------------------------------------------------------------------------------


def gpu_part(args) -> None:
    A, n, d, k, epochs, bs = args.gpu_adapters, args.rows, args.gpu_features, args.classes, args.epochs, args.batch_size
    print(f"\n== GPU: {A} adapters x {n} rows x {d} features x {k} classes x {epochs} epochs, hidden=0 ==")
    try:
        import torch
    except ImportError:
        print("skipped: no CUDA GPU (PyTorch is not installed, and the anchors need it)")
        return
    if not torch.cuda.is_available():
        print("skipped: no CUDA GPU (torch.cuda.is_available() is False)")
        return
    trainer = mlops.CudaTrainer(device="auto", seed=0, progress=False)
    if trainer.device == "cpu":
        print(f"skipped: no CUDA GPU usable by mlops ({trainer.device_reason})")
        return
    dev = torch.device("cuda:0")
    print(f"mlops device: {trainer.device}; torch {torch.__version__}")

    # Device bandwidth, measured now: a large device-to-device copy reads and writes each byte once.
    buf = torch.empty(512 * 2**20, dtype=torch.float32, device=dev)
    out = torch.empty_like(buf)
    out.copy_(buf)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    reps = 10
    for _ in range(reps):
        out.copy_(buf)
    torch.cuda.synchronize()
    bandwidth = 2 * buf.numel() * 4 * reps / (time.perf_counter() - t0)
    del buf, out
    torch.cuda.empty_cache()

    rng = np.random.default_rng(1)
    l2 = 1.0 / n
    datasets, Xs, ys = [], [], []
    for _ in range(A):
        X, y, _, _ = make_task(rng, n, 1, d, k)
        datasets.append(mlops.Dataset(X, y))
        Xs.append(X)
        ys.append(y)
    specs = [
        mlops.AdapterSpec(name=f"g{i:04d}", dataset=ds, epochs=epochs, batch_size=bs, learning_rate=args.lr, l2=l2,
                          validation_fraction=0.0)
        for i, ds in enumerate(datasets)
    ]

    free0, total = torch.cuda.mem_get_info()
    lowest = [free0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            lowest[0] = min(lowest[0], torch.cuda.mem_get_info()[0])
            time.sleep(0.01)

    w = threading.Thread(target=watch)
    w.start()
    t0 = time.perf_counter()
    trained = trainer.fit(specs)
    t_mlops = time.perf_counter() - t0
    stop.set()
    w.join()
    mlops_mem = free0 - lowest[0]
    del trained

    # Batched PyTorch ensemble: all adapters in one tensor, one bmm per step, one Adam over all weights.
    Xall = torch.from_numpy(np.stack(Xs)).to(dev)
    yall = torch.from_numpy(np.stack(ys)).long().to(dev)
    torch.cuda.reset_peak_memory_stats()
    W = torch.zeros(A, d, k, device=dev, requires_grad=True)
    b = torch.zeros(A, 1, k, device=dev, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=args.lr)
    gen = torch.Generator(device=dev).manual_seed(0)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.argsort(torch.rand(A, n, device=dev, generator=gen), dim=1)
        for s in range(0, n, bs):
            idx = perm[:, s:s + bs]
            xb = torch.gather(Xall, 1, idx.unsqueeze(-1).expand(-1, -1, d))
            yb = torch.gather(yall, 1, idx)
            z = torch.bmm(xb, W) + b
            loss = torch.nn.functional.cross_entropy(z.reshape(-1, k), yb.reshape(-1), reduction="sum") / idx.shape[1]
            loss = loss + 0.5 * l2 * (W * W).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    torch.cuda.synchronize()
    t_ens = time.perf_counter() - t0
    ens_mem = torch.cuda.max_memory_allocated()
    del W, b, opt

    # PyTorch loop over adapters: one small model and optimiser per adapter (measured on a sample).
    sample = min(A, args.loop_adapters)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(sample):
        X = Xall[i]
        y = yall[i]
        lin = torch.nn.Linear(d, k, device=dev)
        torch.nn.init.zeros_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
        o = torch.optim.Adam(lin.parameters(), lr=args.lr)
        for _ in range(epochs):
            perm = torch.randperm(n, device=dev)
            for s in range(0, n, bs):
                idx = perm[s:s + bs]
                loss = torch.nn.functional.cross_entropy(lin(X[idx]), y[idx]) + 0.5 * l2 * (lin.weight ** 2).sum()
                o.zero_grad(set_to_none=True)
                loss.backward()
                o.step()
    torch.cuda.synchronize()
    t_loop = (time.perf_counter() - t0) * A / sample

    x_bytes = A * n * d * 4
    floor = epochs * x_bytes / bandwidth
    rows = [
        ["mlops CudaTrainer", f"{t_mlops:.3f}", f"{mlops_mem / 2**30:.2f}", "1.0x", f"{t_mlops / floor:.2f}x"],
        ["PyTorch bmm ensemble", f"{t_ens:.3f}", f"{ens_mem / 2**30:.2f}", f"{t_ens / t_mlops:.1f}x", f"{t_ens / floor:.2f}x"],
        [f"PyTorch loop (measured {sample}, scaled)", f"{t_loop:.3f}", "-", f"{t_loop / t_mlops:.1f}x",
         f"{t_loop / floor:.2f}x"],
        ["bandwidth floor", f"{floor:.3f}", "-", f"{floor / t_mlops:.2f}x", "1.0x"],
    ]
    table(rows, ["backend", "seconds", "device GiB", "time vs mlops", "time vs floor"])
    print(f"device bandwidth measured: {bandwidth / 1e9:.0f} GB/s; X per epoch {x_bytes / 2**30:.2f} GiB; "
          f"device total {total / 2**30:.1f} GiB")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--adapters", type=int, default=100)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--test-rows", type=int, default=500)
    p.add_argument("--features", type=int, default=256)
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--C", type=float, default=0.1, help="sklearn's inverse L2 strength; l2 = 1/(C*rows)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--sklearn-adapters", type=int, default=0,
                   help="fit sklearn on only this many adapters and scale the time (0 = all)")
    p.add_argument("--gpu-adapters", type=int, default=1000)
    p.add_argument("--gpu-features", type=int, default=768)
    p.add_argument("--loop-adapters", type=int, default=50, help="adapters the PyTorch loop is timed on")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--skip-gpu", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.adapters, args.rows, args.features, args.gpu_adapters = 10, 500, 64, 50
    print(f"mlops {mlops.__version__}, components {mlops.components}, {os.cpu_count()} CPUs")
    if not args.skip_cpu:
        cpu_part(args)
    if not args.skip_gpu:
        gpu_part(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
