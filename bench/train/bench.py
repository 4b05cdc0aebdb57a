"""Benchmark of CudaTrainer: many softmax adapters trained at once, side by side with the anchors.

CPU part (runs everywhere): 100 adapters x 2,000 rows x 256 features x 8 classes x 10 epochs, hidden=0,
against scikit-learn fitted once per adapter with the same L2 penalty (sklearn minimises C*sum(CE) +
|W|^2/2, the trainer mean(CE) + l2/2*|W|^2, so l2 = 1/(C*rows)): SGDClassifier(log_loss) with the same
number of passes over the data (the same work: the speed ratio is taken against it), and
LogisticRegression(lbfgs) to convergence (different work: an accuracy reference, its time shown apart).
Every contender uses the same number of threads (--threads, default every core; sklearn fits adapters in
parallel with joblib), runs once untimed as a warm-up, then --repeat times; the best time is shown.
Accuracy is measured on 500 held-out rows per adapter drawn from the same distribution. Host peak memory
is the process's peak resident set during fit() above its size before the data was made, divided by the
bytes of the data (X and y).

GPU part (needs a CUDA GPU and PyTorch): 1,000 adapters x 2,000 rows x 768 features x 8 classes x 10
epochs, at each of --gpu-batch-sizes, against a PyTorch loop over adapters, a batched PyTorch ensemble
(torch.bmm over all adapters), JAX (one adapter's Adam step vmapped over all adapters, an epoch as a
lax.scan, jitted; compile time not counted) when JAX sees a GPU, and the memory-bandwidth floor (bytes of
X read per epoch / device bandwidth measured here). mlops' fit() is split into its fixed cost (host work
and the upload: fit(1 epoch) less one epoch) and the training itself (epochs x the time one more epoch adds).

    python bench/train/bench.py            # both parts (the GPU part says why it is skipped)
    python bench/train/bench.py --quick    # smaller sizes, for a smoke run
    python bench/train/bench.py --skip-cpu --gpu-batch-sizes 256,32 --summary out.json   # as tools/gpu-check.sh
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


def cpu_part(args) -> dict:
    from sklearn.linear_model import LogisticRegression

    A, n, d, k, epochs = args.adapters, args.rows, args.features, args.classes, args.epochs
    C = args.C
    l2 = 1.0 / (C * n)
    print(f"\n== CPU: {A} adapters x {n} rows x {d} features x {k} classes x {epochs} epochs, hidden=0 ==")
    threads = args.threads or os.cpu_count()
    print(f"threads={threads} (mlops and sklearn alike), batch_size={args.batch_size}, adam lr={args.lr}, "
          f"l2={l2:.3g} (C={C}); warm-up + best of {args.repeat}")
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
    trainer = mlops.CudaTrainer(device="cpu", seed=0, threads=threads, progress=False)
    trainer.fit(specs[:2])  # warm-up, untimed
    have_peak = reset_peak_rss()
    t_mlops = float("inf")
    for rep in range(args.repeat):
        t0 = time.perf_counter()
        trained = trainer.fit(specs)
        t_mlops = min(t_mlops, time.perf_counter() - t0)
        if rep == 0:
            peak = rss_bytes("VmHWM") if have_peak else rss_bytes()
    acc_mlops = [float(np.mean(t.adapter.predict_indices(Xt) == yt)) for t, (Xt, yt) in zip(trained, tests)]

    from joblib import Parallel, delayed
    from sklearn.linear_model import SGDClassifier

    sample = min(A, args.sklearn_adapters or A)

    def fit_lbfgs(X, y, Xt, yt):
        return float(LogisticRegression(C=C, max_iter=1000).fit(X, y).score(Xt, yt))

    def fit_sgd(X, y, Xt, yt):
        m = SGDClassifier(loss="log_loss", alpha=l2, max_iter=epochs, tol=None, shuffle=True, random_state=0)
        return float(m.fit(X, y).score(Xt, yt))

    def timed(fit):
        """Best of --repeat over `sample` adapters, fitted `threads` at a time in one warm pool; and the accuracies."""
        jobs = [(np.asarray(datasets[i].X), np.asarray(datasets[i].y), *tests[i]) for i in range(sample)]
        with Parallel(n_jobs=threads) as pool:
            pool(delayed(fit)(*j) for j in jobs[:threads])  # warm-up: starts the workers, maps the data
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                accs = pool(delayed(fit)(*j) for j in jobs)
                best = min(best, time.perf_counter() - t0)
        return best * A / sample, accs

    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # SGD stops after `epochs` passes on purpose
        t_sgd, acc_sgd = timed(fit_sgd)
        t_sk, acc_sk = timed(fit_lbfgs)

    acc_m = float(np.mean(acc_mlops))
    acc_s = float(np.mean(acc_sk))
    acc_m_same = float(np.mean(acc_mlops[:sample]))
    sk_note = "" if sample == A else f" (measured {sample}, scaled to {A})"
    acc_g = float(np.mean(acc_sgd))
    rows = [
        ["mlops CudaTrainer (cpu, Adam)", f"{t_mlops:.2f}", f"{A / t_mlops:.1f}", f"{acc_m:.4f}", f"{t_sgd / t_mlops:.1f}x"],
        [f"sklearn SGDClassifier, {epochs} passes" + sk_note, f"{t_sgd:.2f}", f"{A / t_sgd:.1f}", f"{acc_g:.4f}", "1.0x"],
        ["sklearn LogisticRegression lbfgs, converged" + sk_note, f"{t_sk:.2f}", f"{A / t_sk:.1f}", f"{acc_s:.4f}",
         "(different work)"],
    ]
    table(rows, ["backend", "seconds", "adapters/s", "held-out acc", "speed vs same work"])
    print(f"accuracy gap (mlops - sklearn, same {sample} adapters): {100 * (acc_m_same - acc_s):+.2f} points")
    grow = peak - base
    print(f"host memory: data {data_bytes / 2**20:.1f} MiB; peak RSS during fit {peak / 2**20:.1f} MiB, "
          f"{grow / 2**20:.1f} MiB above the process before the data = {grow / data_bytes:.2f}x the data"
          + ("" if have_peak else " (peak reset unavailable: RSS after fit)"))
    return {"adapters": A, "rows": n, "features": d, "classes": k, "epochs": epochs, "fit_seconds": round(t_mlops, 3),
            "sklearn_seconds": round(t_sk, 3), "accuracy": round(acc_m, 4), "sklearn_accuracy": round(acc_s, 4),
            "sklearn_sgd_seconds": round(t_sgd, 3), "sklearn_sgd_accuracy": round(acc_g, 4), "threads": threads,
            "repeat": args.repeat,
            "peak_over_data": round(grow / data_bytes, 2)}


# ---- GPU ----------------------------------------------------------------------------------------------


def _bandwidth(torch, dev) -> float:
    """Device bandwidth, measured now: a large device-to-device copy reads and writes each byte once."""
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
    return bandwidth


def _gpu_data(torch, dev, A, n, d, k):
    """The adapters' data, drawn on the device (fast) and copied to the host once: (A, n, d), (A, n)."""
    gen = torch.Generator(device=dev).manual_seed(1)
    centres = torch.randn(A, k, d, device=dev, generator=gen) * CLASS_SPREAD
    y = torch.randint(0, k, (A, n), device=dev, generator=gen)
    X = torch.gather(centres, 1, y.unsqueeze(-1).expand(-1, -1, d))
    X += torch.randn(A, n, d, device=dev, generator=gen)
    return X.contiguous(), y.to(torch.int32).contiguous()


def _torch_ensemble(torch, Xall, yall, epochs, bs, lr, l2):
    A, n, d = Xall.shape
    k = int(yall.max().item()) + 1
    yl = yall.long()
    W = torch.zeros(A, d, k, device=Xall.device, requires_grad=True)
    b = torch.zeros(A, 1, k, device=Xall.device, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=lr)
    gen = torch.Generator(device=Xall.device).manual_seed(0)
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.argsort(torch.rand(A, n, device=Xall.device, generator=gen), dim=1)
        for s in range(0, n, bs):
            idx = perm[:, s:s + bs]
            xb = torch.gather(Xall, 1, idx.unsqueeze(-1).expand(-1, -1, d))
            yb = torch.gather(yl, 1, idx)
            z = torch.bmm(xb, W) + b
            loss = torch.nn.functional.cross_entropy(z.reshape(-1, k), yb.reshape(-1), reduction="sum") / idx.shape[1]
            loss = loss + 0.5 * l2 * (W * W).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, torch.cuda.max_memory_allocated()


def _torch_loop(torch, Xall, yall, epochs, bs, lr, l2, sample):
    """One small model and optimiser per adapter, timed on `sample` adapters and scaled to all."""
    A, n, d = Xall.shape
    k = int(yall.max().item()) + 1
    yl = yall.long()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(sample):
        X, y = Xall[i], yl[i]
        lin = torch.nn.Linear(d, k, device=Xall.device)
        torch.nn.init.zeros_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
        o = torch.optim.Adam(lin.parameters(), lr=lr)
        for _ in range(epochs):
            perm = torch.randperm(n, device=Xall.device)
            for s in range(0, n, bs):
                idx = perm[s:s + bs]
                loss = torch.nn.functional.cross_entropy(lin(X[idx]), y[idx]) + 0.5 * l2 * (lin.weight ** 2).sum()
                o.zero_grad(set_to_none=True)
                loss.backward()
                o.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * A / sample


def _jax_vmap(X_host, y_host, k, epochs, bs, lr, l2):
    """JAX: one adapter's Adam step, vmapped over all adapters and jitted; an epoch is a lax.scan of steps.
    Returns (seconds for the epochs after compilation, compile seconds), or a reason it did not run."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return "JAX is not installed"
    if not any(dv.platform == "gpu" for dv in jax.devices()):
        return f"JAX sees no GPU ({jax.devices()})"
    A, n, d = X_host.shape
    steps = -(-n // bs)
    X = jax.device_put(X_host)
    y = jax.device_put(y_host)

    def loss_fn(params, xb, yb, mask):
        W, b = params
        z = xb @ W + b
        logp = jax.nn.log_softmax(z)
        ce = -jnp.take_along_axis(logp, yb[:, None], axis=1)[:, 0]
        return jnp.sum(ce * mask) / jnp.sum(mask) + 0.5 * l2 * jnp.sum(W * W)

    def adam_step(params, m, v, t, xb, yb, mask):
        g = jax.grad(loss_fn)(params, xb, yb, mask)
        m = jax.tree_util.tree_map(lambda a, b_: 0.9 * a + 0.1 * b_, m, g)
        v = jax.tree_util.tree_map(lambda a, b_: 0.999 * a + 0.001 * b_ * b_, v, g)
        c1, c2 = 1.0 / (1.0 - 0.9 ** t), 1.0 / (1.0 - 0.999 ** t)
        params = jax.tree_util.tree_map(lambda p, mm, vv: p - lr * (mm * c1) / (jnp.sqrt(vv * c2) + 1e-8), params, m, v)
        return params, m, v

    def epoch(state, key):
        params, m, v, t = state
        perm = jax.vmap(lambda kk: jax.random.permutation(kk, n))(jax.random.split(key, A))
        pad = steps * bs - n
        perm = jnp.concatenate([perm, jnp.zeros((A, pad), perm.dtype)], axis=1).reshape(A, steps, bs)
        mask_all = (jnp.arange(steps * bs) < n).astype(jnp.float32).reshape(steps, bs)

        def step(carry, s):
            params, m, v, t = carry
            idx = perm[:, s]
            xb = jnp.take_along_axis(X, idx[:, :, None], axis=1)
            yb = jnp.take_along_axis(y, idx, axis=1)
            params, m, v = jax.vmap(adam_step, in_axes=(0, 0, 0, None, 0, 0, None))(params, m, v, t + 1.0, xb, yb, mask_all[s])
            return (params, m, v, t + 1.0), None

        (params, m, v, t), _ = jax.lax.scan(step, (params, m, v, t), jnp.arange(steps))
        return (params, m, v, t)

    epoch = jax.jit(epoch)
    zeros = (jnp.zeros((A, d, k)), jnp.zeros((A, k)))
    state = (zeros, jax.tree_util.tree_map(jnp.zeros_like, zeros), jax.tree_util.tree_map(jnp.zeros_like, zeros), 0.0)
    keys = jax.random.split(jax.random.PRNGKey(0), epochs + 1)
    t0 = time.perf_counter()
    jax.block_until_ready(epoch(state, keys[0]))  # compile
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    for e in range(epochs):
        state = epoch(state, keys[e + 1])
    jax.block_until_ready(state)
    return time.perf_counter() - t0, t_compile


def gpu_part(args) -> dict:
    A, n, d, k, epochs = args.gpu_adapters, args.rows, args.gpu_features, args.classes, args.epochs
    batch_sizes = [int(b) for b in str(args.gpu_batch_sizes).split(",")]
    print(f"\n== GPU: {A} adapters x {n} rows x {d} features x {k} classes x {epochs} epochs, hidden=0, "
          f"batch {', '.join(map(str, batch_sizes))} ==")
    summary = {"adapters": A, "rows": n, "features": d, "classes": k, "epochs": epochs}
    try:
        import torch
    except ImportError:
        print("skipped: no CUDA GPU (PyTorch is not installed, and the anchors need it)")
        return {**summary, "skipped": "PyTorch is not installed"}
    if not torch.cuda.is_available():
        print("skipped: no CUDA GPU (torch.cuda.is_available() is False)")
        return {**summary, "skipped": "torch.cuda.is_available() is False"}
    trainer = mlops.CudaTrainer(device="auto", seed=0, progress=False)
    if trainer.device == "cpu":
        print(f"skipped: no CUDA GPU usable by mlops ({trainer.device_reason})")
        return {**summary, "skipped": trainer.device_reason}
    dev = torch.device("cuda:0")
    print(f"mlops device: {trainer.device}; torch {torch.__version__}")
    bandwidth = _bandwidth(torch, dev)

    t0 = time.perf_counter()
    Xall, yall = _gpu_data(torch, dev, A, n, d, k)
    X_host, y_host = Xall.cpu().numpy(), yall.cpu().numpy()
    t_draw = time.perf_counter() - t0
    t0 = time.perf_counter()
    datasets = [mlops.Dataset(X_host[i], y_host[i], classes=[str(c) for c in range(k)]) for i in range(A)]
    t_datasets = time.perf_counter() - t0
    print(f"data drawn in {t_draw:.1f}s; {A} Datasets made (copied, digested, validated once) in {t_datasets:.1f}s")
    l2 = 1.0 / n
    x_bytes = A * n * d * 4
    summary.update(bandwidth_gbs=round(bandwidth / 1e9, 1), dataset_seconds=round(t_datasets, 3), runs={})

    for bs in batch_sizes:
        def specs(e):
            return [mlops.AdapterSpec(name=f"g{i:04d}", dataset=ds, epochs=e, batch_size=bs, learning_rate=args.lr,
                                      l2=l2, validation_fraction=0.0) for i, ds in enumerate(datasets)]

        def timed_fit(e):
            s = specs(e)
            free0 = torch.cuda.mem_get_info()[0]
            lowest = [free0]
            stop = threading.Event()

            def watch():
                while not stop.is_set():
                    lowest[0] = min(lowest[0], torch.cuda.mem_get_info()[0])
                    time.sleep(0.01)

            w = threading.Thread(target=watch)
            w.start()
            t = time.perf_counter()
            trained = trainer.fit(s)
            t = time.perf_counter() - t
            stop.set()
            w.join()
            return t, free0 - lowest[0], trained[0].notes

        timed_fit(1)  # warm: loads the module, creates the context
        t_one, _, _ = timed_fit(1)
        t_all, mlops_mem, notes = timed_fit(epochs)
        per_epoch = (t_all - t_one) / (epochs - 1) if epochs > 1 else t_all
        fixed = max(0.0, t_one - per_epoch)  # host work and the upload: what one more epoch does not add
        t_train = per_epoch * epochs
        torch.cuda.empty_cache()

        # The anchors get the warm-up mlops got (kernels loaded, allocator primed) before they are timed.
        _torch_ensemble(torch, Xall, yall, 1, bs, args.lr, l2)
        t_ens, ens_mem = _torch_ensemble(torch, Xall, yall, epochs, bs, args.lr, l2)
        torch.cuda.empty_cache()
        sample = max(1, min(A, args.loop_adapters if bs >= 128 else args.loop_adapters // 3))
        _torch_loop(torch, Xall, yall, 1, bs, args.lr, l2, 1)
        t_loop = _torch_loop(torch, Xall, yall, epochs, bs, args.lr, l2, sample)
        torch.cuda.empty_cache()
        jx = _jax_vmap(X_host, y_host, k, epochs, bs, args.lr, l2)
        floor = epochs * x_bytes / bandwidth

        print(f"\n-- batch {bs}: fit() {t_all:.3f}s = fixed {fixed:.3f}s (host work + upload) + {epochs} epochs x "
              f"{per_epoch:.4f}s" + (f"; notes: {notes}" if notes else ""))
        rows = [
            ["mlops CudaTrainer, whole fit()", f"{t_all:.3f}", f"{mlops_mem / 2**30:.2f}", "1.0x", f"{t_all / floor:.2f}x"],
            ["mlops CudaTrainer, training only", f"{t_train:.3f}", "-", f"{t_train / t_all:.2f}x", f"{t_train / floor:.2f}x"],
            ["PyTorch bmm ensemble", f"{t_ens:.3f}", f"{ens_mem / 2**30:.2f}", f"{t_ens / t_all:.1f}x", f"{t_ens / floor:.2f}x"],
            [f"PyTorch loop (measured {sample}, scaled)", f"{t_loop:.3f}", "-", f"{t_loop / t_all:.1f}x", f"{t_loop / floor:.2f}x"],
        ]
        run = {"fit_seconds": round(t_all, 4), "fixed_seconds": round(fixed, 4), "epoch_seconds": round(per_epoch, 5),
               "mlops_device_gib": round(mlops_mem / 2**30, 2), "torch_bmm_seconds": round(t_ens, 4),
               "torch_loop_seconds": round(t_loop, 3), "floor_seconds": round(floor, 5),
               "vs_torch_loop": round(t_loop / t_all, 1), "vs_torch_bmm": round(t_ens / t_all, 2),
               "training_vs_floor": round(t_train / floor, 2), "notes": notes}
        if isinstance(jx, tuple):
            t_jax, t_compile = jx
            rows.append([f"JAX vmap (compile {t_compile:.1f}s not counted)", f"{t_jax:.3f}", "-", f"{t_jax / t_all:.1f}x",
                         f"{t_jax / floor:.2f}x"])
            run.update(jax_vmap_seconds=round(t_jax, 4), vs_jax_vmap=round(t_jax / t_all, 2))
        else:
            rows.append([f"JAX vmap: not run ({jx})", "-", "-", "-", "-"])
            run.update(jax_vmap_skipped=jx)
        rows.append(["bandwidth floor", f"{floor:.3f}", "-", f"{floor / t_all:.2f}x", "1.0x"])
        table(rows, ["backend", "seconds", "device GiB", "time vs mlops fit", "time vs floor"])
        summary["runs"][str(bs)] = run
    print(f"device bandwidth measured: {bandwidth / 1e9:.0f} GB/s; X per epoch {x_bytes / 2**30:.2f} GiB")
    return summary


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
    p.add_argument("--threads", type=int, default=None, help="threads of every contender (default: every core)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of every contender after its warm-up (best shown)")
    p.add_argument("--sklearn-adapters", type=int, default=0,
                   help="fit sklearn on only this many adapters and scale the time (0 = all)")
    p.add_argument("--gpu-adapters", type=int, default=1000)
    p.add_argument("--gpu-features", type=int, default=768)
    p.add_argument("--loop-adapters", type=int, default=30, help="adapters the PyTorch loop is timed on (a third at batch < 128)")
    p.add_argument("--gpu-batch-sizes", default="256", help="comma-separated batch sizes of the GPU part, e.g. 256,32")
    p.add_argument("--summary", default=None, help="write the figures as JSON to this file")
    p.add_argument("--require-gpu", action="store_true", help="exit 2 when the GPU part is skipped")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--skip-gpu", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.adapters, args.rows, args.features, args.gpu_adapters = 10, 500, 64, 50
    print(f"mlops {mlops.__version__}, components {mlops.components}, {os.cpu_count()} CPUs")
    summary = {"mlops": mlops.__version__}
    if not args.skip_cpu:
        summary["cpu"] = cpu_part(args)
    if not args.skip_gpu:
        summary["gpu"] = gpu_part(args)
    if args.summary:
        import json

        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=1)
    if args.require_gpu and (args.skip_gpu or "skipped" in summary.get("gpu", {})):
        print("the GPU part was required and did not run", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
