"""Peak memory of one (backend, architecture, batch) point, each measured in a fresh process.

Why not in the benchmark process: there every other point's model, optimizer and
data are resident too, and memory that NumPy or torch freed stays mapped in the
C allocator's heap, so the high-water mark of one point would depend on which
points ran before it.  Instead ``python -m benchmarks.memory`` is started once
per backend; it imports only what that backend needs (no torch for NumPy) and
then forks one child per batch size, so each point starts from the same clean
state without paying torch's import again.  The child first runs one step of a
tiny model (so library code and thread pools that are loaded on first use count
in the baseline, not in the point), then measures:

    CPU   baseline = VmRSS.  Then the kernel's high-water mark is reset
          (``echo 5 > /proc/self/clear_refs`` sets VmHWM to the current RSS), the
          model, optimizer and one batch are built and a few inference passes run;
          VmHWM from /proc/self/status is the inference peak.  Reset again, a few
          training steps: VmHWM is the training peak.  Reported as the peak and as
          the peak minus the baseline (the point's own memory: weights, gradients,
          Adam state, the batch, activations, library workspaces).
          Where /proc/self/clear_refs is not writable (not Linux, or a locked-down
          container), the lifetime peak ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
          is used instead and ``method`` says so; inference runs before training,
          so both numbers stay meaningful, only the reset is missing.
    CUDA  torch.cuda.reset_peak_memory_stats() once the CUDA context exists, then
          torch.cuda.max_memory_allocated() after the inference passes, and again
          (reset, steps, read) for training: every byte the point allocates through
          torch's caching allocator (the context itself is not included).

Where os.fork is missing the points run one after another in the same process
(``isolation`` says so).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

MB = 2 ** 20
_ROOT = Path(__file__).resolve().parent.parent


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes(can_reset: bool) -> int:
    if can_reset:
        kb = _status_kb("VmHWM")
        if kb is not None:
            return kb * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024     # bytes on macOS, kB on Linux


def _rss_bytes() -> int | None:
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else None


def probe(backend_name: str, hidden, latent: int, batch: int, steps: int = 2) -> dict:
    """Run in the child: build the point and measure it (see the module docstring)."""
    import numpy as np
    from .steps import BACKENDS, DataPool, make_model
    backend = BACKENDS[backend_name]
    cuda = backend.device == "cuda"
    if backend.library == "torch":
        import torch
        if cuda:
            torch.zeros(1, device="cuda")           # the CUDA context, outside the measurement
    tiny_train, tiny_infer = make_model(backend_name, (8, 4), 2).closures(
        DataPool(np.full((1, 784), 0.5, np.float32), "warm-up"), 1)
    tiny_infer()
    tiny_train()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    result = {"backend": backend_name, "hidden": list(hidden), "latent": latent, "batch": batch}
    baseline = _rss_bytes()
    can_reset = _reset_hwm()
    rng = np.random.default_rng(0)
    pool = DataPool(rng.random((batch, 784), dtype=np.float32), "synthetic", seed=0)
    model = make_model(backend_name, hidden, latent)
    train, infer = model.closures(pool, batch)
    static = _rss_bytes()
    static_cuda = torch.cuda.memory_allocated() if cuda else None
    for _ in range(steps):
        infer()
    if cuda:
        torch.cuda.synchronize()
        result["cuda_infer_peak_mb"] = torch.cuda.max_memory_allocated() / MB
        torch.cuda.reset_peak_memory_stats()
    result["infer_peak_rss_mb"] = _peak_bytes(can_reset) / MB
    can_reset = can_reset and _reset_hwm()
    for _ in range(steps):
        train()
    if cuda:
        torch.cuda.synchronize()
        result["cuda_train_peak_mb"] = torch.cuda.max_memory_allocated() / MB
        result["cuda_static_mb"] = static_cuda / MB
    result["train_peak_rss_mb"] = _peak_bytes(can_reset) / MB
    result["method"] = ("VmHWM after resetting it via /proc/self/clear_refs" if can_reset
                        else "getrusage ru_maxrss (lifetime peak; /proc/self/clear_refs not writable)")
    if baseline is not None:
        result["baseline_rss_mb"] = baseline / MB
        result["static_mb"] = (static - baseline) / MB if static is not None else None
        result["infer_mb"] = result["infer_peak_rss_mb"] - baseline / MB
        result["train_mb"] = result["train_peak_rss_mb"] - baseline / MB
    if cuda:       # on CUDA the point's memory is the device's
        result["infer_mb"], result["train_mb"] = result["cuda_infer_peak_mb"], result["cuda_train_peak_mb"]
        result["method"] = "torch.cuda.max_memory_allocated after reset_peak_memory_stats"
    return result


def _probe_isolated(backend_name: str, hidden, latent: int, batch: int, steps: int) -> dict:
    """``probe`` in a forked child (a clean copy of this process); in-process where fork is missing."""
    if not hasattr(os, "fork"):
        return {**probe(backend_name, hidden, latent, batch, steps), "isolation": "same process (no os.fork)"}
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # the child: measure, report, leave without cleanup
        code = 0
        try:
            os.close(read_fd)
            result = {**probe(backend_name, hidden, latent, batch, steps), "isolation": "forked child per point"}
        except BaseException as e:                  # noqa: BLE001  (reported to the parent, never raised here)
            result, code = {"error": f"{type(e).__name__}: {e}"}, 1
        with os.fdopen(write_fd, "w") as f:
            f.write(json.dumps(result))
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return json.loads(text) if text else {"error": "memory probe child died without a result"}


class Probe:
    """A running ``python -m benchmarks.memory`` for one backend (started by ``start``, read by ``collect``)."""

    def __init__(self, backend_name: str, hidden, latent: int, batches: list[int], steps: int = 2):
        cmd = [sys.executable, "-m", "benchmarks.memory", "--backend", backend_name,
               "--hidden", ",".join(str(h) for h in hidden), "--latent", str(latent),
               "--batches", ",".join(str(b) for b in batches), "--steps", str(steps)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        self.batches = list(batches)
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=env, cwd=str(_ROOT))

    def collect(self, timeout: float = 900) -> dict[int, dict]:
        """batch -> probe's dict, or {"error": ...} for a batch the child did not report."""
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            return {b: {"error": f"memory probe timed out after {timeout:.0f} s"} for b in self.batches}
        results = {}
        for line in stdout.splitlines():
            if line.startswith("{"):
                item = json.loads(line)
                results[int(item.pop("requested_batch"))] = item
        tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        for b in self.batches:
            results.setdefault(b, {"error": f"memory probe exited {self.process.returncode}: {tail[0]}"})
        return results


def measure(backend_name: str, hidden, latent: int, batches: list[int], steps: int = 2,
            timeout: float = 900) -> dict[int, dict]:
    """Peak memory of ``backend_name`` at every batch size: batch -> probe's dict (or {"error": ...}).

    One fresh interpreter per call (so the calling process's own state does not
    leak in), forking one child per batch inside it.  Probes of several backends
    may run at the same time (``Probe``): memory, unlike time, is not disturbed
    by a neighbour.
    """
    return Probe(backend_name, hidden, latent, batches, steps).collect(timeout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory",
                                description="peak memory of one backend at several batch sizes (JSON lines)")
    p.add_argument("--backend", required=True)
    p.add_argument("--hidden", required=True, help="e.g. 512,256")
    p.add_argument("--latent", type=int, required=True)
    p.add_argument("--batches", required=True, help="e.g. 1,32,128")
    p.add_argument("--steps", type=int, default=2)
    a = p.parse_args(argv)
    hidden = tuple(int(h) for h in a.hidden.split(","))
    if a.backend.startswith("torch"):
        # Imported once here and inherited by every forked child.  Building a tiny model and
        # its optimizer loads the modules torch imports lazily on first use (seconds: the
        # meta-device references, torch._dynamo for torch.optim), but runs no computation,
        # so no thread pool and no CUDA context exists yet when we fork.
        from .steps import make_model
        make_model("torch-cpu-f32", (8, 4), 2)
    for batch in (int(b) for b in a.batches.split(",")):
        result = _probe_isolated(a.backend, hidden, a.latent, batch, a.steps)
        print(json.dumps({"requested_batch": batch, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
