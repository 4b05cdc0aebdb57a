"""`mlops serve` against `mlflow models serve`, with wrk on loopback.

1. A 1,000-adapter release folder (text adapters, 1,024 hashed features, 6 classes): load time and resident
   memory of `mlops serve` (targets ≤ 2 s, ≤ 200 MB).
2. Single-text requests to one adapter, 64 connections: requests/s and p99 of `mlops serve` and of
   `mlflow models serve` on the same adapter (its pyfunc) with the same text (targets ≥ 45,000 requests/s, ≥ 50× the anchor in its best worker count, p99 ≤ 5 ms).
3. Requests of 64 texts each: predictions/s (target ≥ 50,000).
4. wrk for 60 s while the release is switched every 5 s: non-2xx responses and socket errors (target 0).
5. With 2,000 idle connections and 300 slowloris connections (a request head sent a line at a time) open,
   `/health` and a prediction on a new connection each answer in ≤ 50 ms (the server's default limits).

Run: `python bench/serve/bench.py` (needs wrk; `--quick` for a short smoke run).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import time

import numpy as np

import mlops

HERE = pathlib.Path(__file__).resolve().parent
WORK = HERE.parents[1] / "build" / "bench-serve"
TEXT = "my router order has not arrived and the tracking stopped updating, please help"
CLASSES = ["account", "billing", "returns", "shipping", "technical", "other"]


def name(i: int) -> str:
    return f"customer-{i:04d}"


def write_release(folder: pathlib.Path, n: int, seed: int, dim: int) -> str:
    rng = np.random.default_rng(seed)
    f = mlops.Featurizer(dimension=dim, seed=0, text="body")
    mlmodel = ("artifact_path: model\nflavors:\n  python_function:\n    data: \"adapter.safetensors\"\n"
               "    loader_module: mlops.pyfunc\n")
    for i in range(n):
        w = rng.normal(size=dim * len(CLASSES) + len(CLASSES)).astype(np.float32)
        a = mlops.Adapter(dim, 0, CLASSES, w, featurizer=f.settings, lineage={"commit": "d" * 40, "code_commit": "c" * 40})
        root = folder / "models" / name(i) / "model"
        root.mkdir(parents=True, exist_ok=True)
        a.save(root / "adapter.safetensors")
        (root / "MLmodel").write_text(mlmodel)
    m = mlops.ReleaseManifest({name(i): 1 + seed for i in range(n)})
    (folder / "manifest.json").write_text(m.to_json())
    return m.md5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_http(port: int, path: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not answer {path}")


def wrk(url: str, body: dict, seconds: int, connections: int = 64, threads: int = 2) -> dict:
    body_file = WORK / f"body-{abs(hash(json.dumps(body))) % 10**8}.json"
    body_file.write_text(json.dumps(body))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(HERE / "post.lua"), url]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, BODY_FILE=str(body_file))).stdout
    def unit(v: str, u: str) -> float:
        return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[u]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p99_ms": unit(*p99.groups()) if p99 else float("nan"),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0, "raw": out, "cmd": " ".join(cmd)}


def crowd_and_probe(port: int, path: str, body: dict, idle: int, slow: int, probes: int) -> dict:
    """Opens `idle` silent connections and `slow` slowloris ones (a request head one line at a time), then times
    `probes` /health requests and `probes` predictions, each on a new connection, while the crowd stays."""
    crowd, slowloris = [], []
    stop = threading.Event()
    try:
        for _ in range(idle):
            crowd.append(socket.create_connection(("127.0.0.1", port)))
        for _ in range(slow):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: bench\r\n".encode())
            slowloris.append(s)

        def trickle() -> None:
            n = 0
            while not stop.wait(0.5):
                n += 1
                for s in slowloris:
                    try:
                        s.sendall(f"X-Slow-{n}: 1\r\n".encode())
                    except OSError:
                        pass

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        health, predict = [], []
        for _ in range(probes):
            for times, method, target, payload in ((health, "GET", "/health", None), (predict, "POST", path, body)):
                t = time.perf_counter()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request(method, target, json.dumps(payload) if payload else None,
                          {"Content-Type": "application/json"} if payload else {})
                r = c.getresponse()
                r.read()
                times.append((time.perf_counter() - t) * 1e3)
                c.close()
                if r.status != 200:
                    raise SystemExit(f"{method} {target} answered {r.status} with the crowd open")
        stop.set()
        trickler.join()
        return {"health_ms": sorted(health), "predict_ms": sorted(predict)}
    finally:
        stop.set()
        for s in crowd + slowloris:
            s.close()


def run_anchor(a_dir: pathlib.Path, env: dict, workers: int, one: dict, port: int, seconds: int) -> dict:
    """`mlflow models serve` on adapter 7 with `workers` uvicorn workers: checked to answer as `mlops serve` on
    `port` does, warmed up, then timed with wrk like it."""
    mport = free_port()
    anchor = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", str(a_dir / "models" / name(7) / "model"),
                               "-p", str(mport), "-h", "127.0.0.1", "--env-manager", "local", "--workers", str(workers)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    try:
        wait_http(mport, "/ping")
        murl = f"http://127.0.0.1:{mport}/invocations"
        c = http.client.HTTPConnection("127.0.0.1", mport)
        c.request("POST", "/invocations", json.dumps(one), {"Content-Type": "application/json"})
        theirs_answer = json.loads(c.getresponse().read())
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("POST", f"/models/{name(7)}/invocations", json.dumps(one), {"Content-Type": "application/json"})
        ours_answer = json.loads(c.getresponse().read())
        assert theirs_answer["predictions"] == ours_answer["predictions"], (theirs_answer, ours_answer)
        wrk(murl, one, 2)
        return wrk(murl, one, seconds)
    finally:
        os.killpg(anchor.pid, signal.SIGTERM)
        anchor.wait(timeout=30)


def admin(port: int, token: str, route: str, body: dict) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", route, json.dumps(body), {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    reply = json.loads(c.getresponse().read())
    c.close()
    return reply


def shadow_section(port: int, token: str, url: str, one: dict, dirs: tuple, seconds: int) -> None:
    """6. The same server serving release A, without and with release B (every adapter in another version) as
    its shadow, in turns, each run after the same warm-up; the shadow's own counters say what it scored."""
    served, shadow_dir = dirs
    admin(port, token, "/admin/release", {"release": str(served)})
    runs: dict = {"off": [], "on": []}
    for _ in range(2):
        for mode in ("off", "on"):
            admin(port, token, "/admin/shadow", {"release": str(shadow_dir) if mode == "on" else None})
            wrk(url, one, 2)  # warm-up
            before = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/shadow", timeout=30).read())
            r = wrk(url, one, seconds)
            after = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/shadow", timeout=30).read())
            r["shadowed"] = sum(m["requests"] for m in after["models"]) - sum(m["requests"] for m in before["models"])
            r["dropped"] = after["dropped"] - before["dropped"]
            runs[mode].append(r)
    off = max(runs["off"], key=lambda r: r["rps"])
    on = max(runs["on"], key=lambda r: r["rps"])
    print(f"\n6. shadow release (1 thread scoring the other version off the response path), 64 connections, "
          f"best of 2 runs of {seconds} s each:")
    print("| server | requests/s | p99 (ms) | shadowed requests | not shadowed (queue full) |\n|---|---|---|---|---|")
    print(f"| without shadow | {off['rps']:,.0f} | {off['p99_ms']:.2f} | | |")
    print(f"| with shadow | {on['rps']:,.0f} | {on['p99_ms']:.2f} | {on['shadowed']:,} | {on['dropped']:,} |")
    print(f"   throughput {on['rps'] / off['rps']:.2f}× (target ≥ 0.6×), p99 {on['p99_ms'] / off['p99_ms']:.2f}× "
          f"(target ≤ 1.5×); non-2xx {on['non2xx']}")
    if on["shadowed"] == 0:
        raise SystemExit("the shadow release scored nothing: the comparison above is void")
    admin(port, token, "/admin/shadow", {"release": None})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapters", type=int, default=1000)
    p.add_argument("--dimension", type=int, default=1024)
    p.add_argument("--seconds", type=int, default=10, help="each wrk run (the switch run takes 60)")
    p.add_argument("--switch-seconds", type=int, default=60)
    p.add_argument("--quick", action="store_true", help="100 adapters, 3 s runs, 10 s switch run")
    args = p.parse_args()
    if args.quick:
        args.adapters, args.seconds, args.switch_seconds = 100, 3, 10
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    a_dir, b_dir = WORK / "release-a", WORK / "release-b"
    t0 = time.time()
    md5_a = write_release(a_dir, args.adapters, 0, args.dimension)
    md5_b = write_release(b_dir, args.adapters, 1, args.dimension)
    print(f"fixture: 2 releases × {args.adapters} adapters ({args.dimension} features, {len(CLASSES)} classes) "
          f"written in {time.time() - t0:.1f} s under {WORK}")

    # The crowd of section 5 needs more descriptors than the usual soft limit, in this process and the server.
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    token = "bench-token"
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "mlops", "serve", str(a_dir), "--port", str(port)],
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, MLOPS_ADMIN_TOKEN=token))
    line = serve.stderr.readline()
    load_s = float(re.search(r"loaded in ([\d.]+) s", line).group(1))
    # Whatever else it says is read, so a full pipe never stalls the server.
    threading.Thread(target=lambda: [None for _ in serve.stderr], daemon=True).start()
    wait_http(port, "/ping")
    rss = rss_mb(serve.pid)
    print(f"\n1. load: {args.adapters} adapters in {load_s:.2f} s (target ≤ 2 s); RSS {rss:.0f} MB (target ≤ 200 MB)")

    one = {"dataframe_split": {"columns": ["body"], "data": [[TEXT]]}}
    many = {"dataframe_split": {"columns": ["body"], "data": [[f"{TEXT} {i}"] for i in range(64)]}}
    url = f"http://127.0.0.1:{port}/models/{name(7)}/invocations"
    wrk(url, one, 2)  # warm up
    ours = wrk(url, one, args.seconds)
    batch = wrk(url, many, args.seconds)

    # The anchor: MLflow's own server on the same adapter (its pyfunc takes the text too), in its best
    # configuration here: uvicorn worker processes, one per core and two per core, the faster one kept.
    # MLflow starts `uvicorn` from PATH: make it this interpreter's, so its pyfunc imports this mlops.
    shim = WORK / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "uvicorn").write_text(f"#!/bin/sh\nexec {sys.executable} -m uvicorn \"$@\"\n")
    (shim / "uvicorn").chmod(0o755)
    anchor_env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ.get('PATH', '')}")
    anchors = {}
    for workers in (os.cpu_count(), 2 * os.cpu_count()):
        anchors[workers] = run_anchor(a_dir, anchor_env, workers, one, port, args.seconds)
        print(f"   mlflow models serve, {workers} workers: {anchors[workers]['rps']:,.0f} requests/s")
    anchor_workers, theirs = max(anchors.items(), key=lambda kv: kv[1]["rps"])

    print(f"\n2. single-text requests, one adapter, 64 connections, {args.seconds} s each (same text, same answer)")
    print("| server | requests/s | p99 (ms) | ratio |\n|---|---|---|---|")
    print(f"| mlops serve | {ours['rps']:,.0f} | {ours['p99_ms']:.2f} | {ours['rps'] / theirs['rps']:.1f}× |")
    print(f"| mlflow models serve, {anchor_workers} workers (its best) | {theirs['rps']:,.0f} | {theirs['p99_ms']:.2f} | 1.0× |")
    print(f"   targets: ≥ 45,000 requests/s, ≥ 50×, p99 ≤ 5 ms; non-2xx {ours['non2xx']} / {theirs['non2xx']}")
    print(f"\n3. 64 texts per request: {batch['rps']:,.0f} requests/s = {batch['rps'] * 64:,.0f} predictions/s "
          f"(target ≥ 50,000), p99 {batch['p99_ms']:.2f} ms")

    # 4. Switch every 5 s while wrk runs.
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(wrk(url, one, args.switch_seconds)))
    runner.start()
    switches, seen = 0, set()
    deadline = time.time() + args.switch_seconds - 2
    while time.time() + 5 < deadline + 2:
        time.sleep(5)
        target = b_dir if switches % 2 == 0 else a_dir
        seen.add(admin(port, token, "/admin/release", {"release": str(target)})["release"])
        switches += 1
    runner.join()
    print(f"\n4. {args.switch_seconds} s of wrk (64 connections) with {switches} release switches "
          f"(releases seen {sorted(seen) == sorted({md5_a, md5_b}) and 'both' or sorted(seen)}): "
          f"{result['requests']:,} requests, {result['non2xx']} non-2xx, {result['socket_errors']} socket errors "
          f"(target 0 and 0); RSS after {rss_mb(serve.pid):.0f} MB")

    crowd = crowd_and_probe(port, f"/models/{name(7)}/invocations", one, idle=2000, slow=300, probes=20)
    h, pr = crowd["health_ms"], crowd["predict_ms"]
    print(f"\n5. with 2,000 idle and 300 slowloris connections open: /health max {h[-1]:.1f} ms (median "
          f"{h[len(h) // 2]:.1f}), a prediction max {pr[-1]:.1f} ms (median {pr[len(pr) // 2]:.1f}), "
          f"{len(h)} of each on new connections (target ≤ 50 ms)")
    shadow_section(port, token, url, one, (a_dir, b_dir), args.seconds)
    serve.send_signal(signal.SIGTERM)
    code = serve.wait(timeout=60)
    print(f"\nmlops serve exited {code} after SIGTERM")
    print(f"wrk command: {ours['cmd']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
