"""What the numbers were measured on: CPU, cores, BLAS, threads, GPU, library versions."""
from __future__ import annotations

import os
import platform
import sys
import time

from numpy_vae.config import ConfigError


def _cpuinfo() -> dict:
    """CPU model and SIMD flags from /proc/cpuinfo (Linux); platform.processor() elsewhere."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = (x.strip() for x in line.partition(":"))
                if key in ("model name", "flags"):
                    info.setdefault(key, value)
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    return {"cpu_model": info.get("model name") or platform.processor() or platform.machine(),
            "simd": [f for f in ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]}


def blas_info() -> list[dict]:
    """The BLAS/OpenMP libraries loaded in this process and their thread counts (threadpoolctl)."""
    from threadpoolctl import threadpool_info
    return [{k: v for k, v in lib.items() if k in ("user_api", "internal_api", "prefix", "version",
                                                    "num_threads", "threading_layer", "architecture")}
            for lib in threadpool_info()]


class CudaUnavailable(ConfigError):
    """--cuda on a machine where torch sees no GPU (a ConfigError: `vae` prints one line, exit 1)."""


def check_cuda() -> None:
    """Fail fast, in one line, where torch sees no GPU."""
    import torch
    if not torch.cuda.is_available():
        raise CudaUnavailable(f"--cuda: CUDA is not available on this machine (torch {torch.__version__}, "
                              f"built for CUDA {torch.version.cuda or 'none'}: torch.cuda.is_available() is False)")


def describe() -> dict:
    """Everything about the machine and software that the numbers depend on."""
    import numpy as np
    import torch

    from numpy_vae.kernels.threads import available_cores   # the cores Adam's threads are counted from
    info = {**_cpuinfo(), "logical_cpus": os.cpu_count(), "usable_cpus": available_cores(),
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "os": platform.platform(), "python": sys.version.split()[0], "numpy": np.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "thread_env": {k: v for k, v in os.environ.items() if k in (
                "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY",
                "OPENBLAS_THREAD_TIMEOUT", "CUDA_VISIBLE_DEVICES")},
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda_available": torch.cuda.is_available(), "gpu": None,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update({"gpu": torch.cuda.get_device_name(0), "gpu_memory_gb": round(props.total_memory / 2**30, 1),
                     "cuda_version": torch.version.cuda, "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32)})
    info["blas"] = blas_info()        # after importing torch, so its OpenMP runtime is listed too
    return info


def label(info: dict) -> str:
    """One line for figure titles and the README: CPU, cores, BLAS (and GPU)."""
    blas = next((b for b in info.get("blas", []) if b.get("user_api") == "blas"), {})
    blas_text = " ".join(str(x) for x in (blas.get("internal_api"), blas.get("version"), blas.get("architecture")) if x)
    cores = info.get("usable_cpus")
    text = f"{info.get('cpu_model')}, {cores} core{'s' if cores != 1 else ''}"
    if blas_text:
        text += f", NumPy {info.get('numpy')} + {blas_text}"
    if info.get("torch"):
        text += f", torch {info['torch'].split('+')[0]} ({info.get('torch_threads')} threads)"
    if info.get("gpu"):
        text += f", GPU {info['gpu']}"
    return text


# ------------------------------------------------------------ quiet-machine check
QUIET_OTHER_CORES = 0.1     # other processes may use at most this many cores on average during the timing


def _busy_seconds() -> float | None:
    """Busy seconds of all CPUs since boot (/proc/stat: user, nice, system, irq, softirq), None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7)) / os.sysconf("SC_CLK_TCK") if fields[:1] == ["cpu"] else None


class LoadMeter:
    """The quiet-machine check: the cores other processes kept busy while this one timed, on average
    (all CPUs' busy time from /proc/stat less this process's own CPU time, over the wall time)."""

    def start(self) -> "LoadMeter":
        self._t0, self._own0, self._busy0 = time.perf_counter(), sum(os.times()[:4]), _busy_seconds()
        return self

    def stop(self) -> dict:
        wall, own, busy = time.perf_counter() - self._t0, sum(os.times()[:4]) - self._own0, _busy_seconds()
        if busy is None or self._busy0 is None or wall <= 0:
            return {"other_cores": None, "quiet": None, "verdict": "unknown (no /proc/stat): look at the IQRs"}
        other = max(0.0, (busy - self._busy0 - own) / wall)
        quiet = other <= QUIET_OTHER_CORES
        return {"other_cores": other, "quiet": quiet, "wall_s": wall,
                "verdict": f"{'quiet' if quiet else 'NOT quiet'}: other processes kept {other:.2f} cores busy on "
                           f"average while this run timed; quiet means <= {QUIET_OTHER_CORES} cores"}
