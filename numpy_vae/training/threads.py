"""How many threads a run should use: one where other processes keep a core busy.

On this project's 2-core machines, two BLAS/OpenMP threads slowed a training step 1.8x (NumPy) to
3.2x (torch) against one thread as soon as another process kept one core busy: the workers spin
waiting for each other (benchmarks/results/load.md).  ``vae train --threads auto`` measures the other
processes' load once, at the start, and picks one thread then.  The choice is recorded in the run's
config, so a resumed run uses the same count: OpenBLAS's results differ in the last bit between one
and two threads, and an exact resume needs the same bits.
"""
from __future__ import annotations

import os
import time

#: Cores kept busy by other processes from which ``auto`` picks one thread.
BUSY_THRESHOLD = 0.5


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat, or None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)          # idle + iowait
    total = sum(fields[:8])                                           # without guest time (counted in user)
    return total - idle, total


def busy_cores(seconds: float = 0.5) -> float | None:
    """Cores kept busy by *other* processes over ``seconds`` (this process's own CPU time removed);
    None where the machine's load cannot be read (not Linux)."""
    start, own0, t0 = _cpu_ticks(), os.times(), time.monotonic()
    if start is None:
        return None
    time.sleep(seconds)
    end, own1, t1 = _cpu_ticks(), os.times(), time.monotonic()
    if end is None or end[1] == start[1]:
        return None
    cores = os.cpu_count() or 1
    machine = (end[0] - start[0]) / (end[1] - start[1]) * cores
    own = ((own1.user - own0.user) + (own1.system - own0.system)) / max(t1 - t0, 1e-9)
    return max(0.0, machine - own)


def auto_threads(log=print) -> int | None:
    """1 where other processes keep at least half a core busy, else None (the libraries' default)."""
    busy = busy_cores()
    if busy is None:
        log("--threads auto: the machine's load cannot be read here; using the libraries' default")
        return None
    if busy >= BUSY_THRESHOLD:
        log(f"--threads auto: other processes keep {busy:.1f} cores busy; training on 1 thread "
            f"(two threads spin against them: see docs/benchmarks.md, 'On a busy machine')")
        return 1
    log(f"--threads auto: the machine is quiet ({busy:.1f} cores busy elsewhere); the libraries' default threads")
    return None
