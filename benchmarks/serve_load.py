"""The live page under a bounded mixed load: p50/p99 latency per route, over loopback only.

    python -m benchmarks.serve_load [--run RUN_DIR] [--data-dir DIR] [--requests 500] [--clients 32]

``vae serve`` runs in a child process (``python -m numpy_vae.cli serve RUN --port 0``, on
127.0.0.1), so the clients here do not share its interpreter.  Without ``--run`` it
serves a temporary run folder of its own: an untrained model of the default architecture
(784-512-256-20), a config.json and a 100-row metrics.csv; it needs the MNIST test set
(``--data-dir``, default $VAE_DATA_DIR or ./data) for "generate digit".

After a warm-up (the page's cached pictures computed once, MNIST loaded), ``--requests``
requests go out from ``--clients`` threads, in a fixed shuffled order, ``--rate`` a second
(an open loop: each is timed from when it was due; ``--rate 0``: a closed loop, each client
sending its next request as soon as it has an answer, which measures how fast the machine
is rather than who waits for whom): about half are
uncached ``/api/generate`` requests (each a new seed: a fresh encode and decode), the rest
the cheap routes: ``/api/run``, ``/api/metrics``, ``/files/config.json``,
``/files/metrics.csv`` and ``/api/samples`` (cached).  Each request has a 30 s timeout
and the whole run stops after ``--limit`` seconds, whatever is left; the server is
stopped at the end.  Printed: per route, the count, the answers by status, p50 and p99
in milliseconds (a generate refused with 503 + Retry-After, because the server's queue
is full, counts as an answer: it is what a client gets).
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHEAP = ["/api/run", "/api/metrics", "/files/config.json", "/files/metrics.csv", "/api/samples"]
GENERATE = "/api/generate"


def make_run(root: Path) -> Path:
    """A run folder of an untrained default model: config.json, metrics.csv (100 rows), last.npz."""
    import csv

    from numpy_vae.backends import make_backend
    from numpy_vae.config import TrainConfig
    from numpy_vae.training.checkpoint import save_checkpoint
    config = TrainConfig(name="serve-load", runs_dir=str(root))
    run = root / "serve-load"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config.to_json(), indent=2))
    columns = ["epoch", "train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl", "lr",
               "beta", "seconds"]
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for epoch in range(1, 101):
            loss = 90 + 100 / epoch
            writer.writerow([epoch, loss, loss - 25, 25, loss + 1, loss - 24, 25, 1e-3, 1.0, 4.2])
    save_checkpoint(run / "last.npz", make_backend(config).get_params(), None,
                    {"config": config.to_json(), "epoch": 100, "metrics": [], "backend": "numpy"})
    return run


def start_server(run: Path, data_dir: str) -> tuple[subprocess.Popen, int]:
    """``vae serve RUN --port 0`` in a child process; (the process, its port)."""
    proc = subprocess.Popen([sys.executable, "-m", "numpy_vae.cli", "serve", str(run), "--port", "0",
                             "--data-dir", data_dir], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    line = proc.stdout.readline()                      # "serving RUN: http://127.0.0.1:PORT/"
    if "http://127.0.0.1:" not in line:
        proc.kill()
        raise SystemExit(f"serve_load: the server did not start (it printed {line!r})")
    return proc, int(line.rsplit(":", 1)[1].strip().strip("/"))


def get(port: int, path: str, timeout: float = 30.0, start: float | None = None) -> tuple[int, float]:
    """(status, seconds) of GET path, timed from ``start`` (a perf_counter time; default: now); status 0 for a
    request that failed (timeout, reset)."""
    start = time.perf_counter() if start is None else start
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        status = resp.status
    except (OSError, http.client.HTTPException):
        status = 0
    finally:
        conn.close()
    return status, time.perf_counter() - start


def plan(requests: int, share: float, count: int, seed: int = 0) -> list[str]:
    """The requests, in a fixed shuffled order: ``share`` of them uncached generates (a new seed each)."""
    rng = random.Random(seed)
    n_generate = round(requests * share)
    paths = [f"{GENERATE}?digit={k % 10}&count={count}&seed={1000 + k}" for k in range(n_generate)]
    paths += [CHEAP[k % len(CHEAP)] for k in range(requests - n_generate)]
    rng.shuffle(paths)
    return paths


def load(port: int, paths: list[str], clients: int, limit: float, rate: float) -> list[tuple[str, int, float]]:
    """Send ``paths`` from ``clients`` threads until done or ``limit`` seconds: [(route, status, seconds)].

    ``rate`` > 0: request k is due at k / rate seconds (an open loop, as users arrive) and is
    timed from when it was due, so a request that waited for a free client counts that wait
    too; ``rate`` 0: each client sends its next request as soon as it has its answer.
    """
    todo: queue.Queue[tuple[int, str]] = queue.Queue()
    for k, p in enumerate(paths):
        todo.put((k, p))
    results, lock = [], threading.Lock()
    begin = time.perf_counter()
    deadline = time.monotonic() + limit

    def client():
        while time.monotonic() < deadline:
            try:
                k, path = todo.get_nowait()
            except queue.Empty:
                return
            due = begin + k / rate if rate > 0 else None
            if due is not None and due > time.perf_counter():
                time.sleep(due - time.perf_counter())
            status, seconds = get(port, path, timeout=max(1.0, min(30.0, deadline - time.monotonic())), start=due)
            with lock:
                results.append((path.split("?")[0], status, seconds))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 31)
    return results


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def table(results: list[tuple[str, int, float]]) -> str:
    by_route = collections.defaultdict(list)
    for route, status, seconds in results:
        by_route[route].append((status, seconds))
    lines = [f"{'route':<22}{'n':>5}  {'answers':<22}{'p50 ms':>9}{'p99 ms':>9}"]
    for route in [*CHEAP, GENERATE]:
        rows = by_route.get(route)
        if not rows:
            continue
        answers = " ".join(f"{s or 'fail'}:{n}" for s, n in sorted(collections.Counter(s for s, _ in rows).items()))
        times = [t * 1e3 for _, t in rows]
        lines.append(f"{route:<22}{len(rows):>5}  {answers:<22}{percentile(times, 50):>9.1f}"
                     f"{percentile(times, 99):>9.1f}")
    cheap = [t * 1e3 for r, _, t in results if r != GENERATE]
    if cheap:
        lines.append(f"{'cheap routes, all':<22}{len(cheap):>5}  {'':<22}{percentile(cheap, 50):>9.1f}"
                     f"{percentile(cheap, 99):>9.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=None, help="a run folder to serve (default: a temporary one of its own)")
    parser.add_argument("--data-dir", default=os.environ.get("VAE_DATA_DIR", "data"),
                        help="folder holding MNIST/raw/ (default: $VAE_DATA_DIR, else ./data)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--generate-share", type=float, default=0.5, help="share of uncached generates (0.5)")
    parser.add_argument("--count", type=int, default=6, help="test digits a generate asks for (the page's 6)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="requests a second, an open loop (default 100: 500 requests in 5 s); 0: each client "
                             "sends its next request at once (a closed loop, as fast as the machine allows)")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds the load may take at most (120)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        run = Path(args.run) if args.run else make_run(Path(tmp))
        proc, port = start_server(run, args.data_dir)
        try:
            for path in ["/api/run", "/api/samples", f"{GENERATE}?digit=0&count={args.count}&seed=0"]:
                status, _ = get(port, path, timeout=120)              # warm-up: caches, MNIST loaded
                if status != 200:
                    raise SystemExit(f"serve_load: warm-up {path} answered {status}")
            start = time.perf_counter()
            results = load(port, plan(args.requests, args.generate_share, args.count), args.clients, args.limit,
                           args.rate)
            wall = time.perf_counter() - start
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
    pace = f"{args.rate:g} a second" if args.rate > 0 else "closed loop"
    print(f"{len(results)} of {args.requests} requests ({pace}), {args.clients} clients, "
          f"{round(args.requests * args.generate_share)} uncached generate (count={args.count}); {wall:.1f} s")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
