"""The machine's own matrix-multiply rate, measured in the same run as the model.

A large square matmul (default 2048 x 2048, 2 n^3 FLOPs) is the best case for a
BLAS: its GFLOP/s is the ceiling a training step made of matmuls can approach.
It is measured as ordinary points of the interleaved run, so the same drift
affects it and the model alike:

    numpy-f32   numpy.matmul on float32 arrays (OpenBLAS/MKL via NumPy) -> THE peak for every CPU backend
    numpy-f64   the same in float64 (when numpy-f64 is benchmarked; float64's own ceiling)
    torch-cpu   torch.matmul float32 on the CPU (torch's own BLAS; for reference)
    torch-cuda  torch.matmul float32 on the GPU (TF32 as the process has it set; torch's default is off)
                -> the peak for torch-cuda-f32
"""
from __future__ import annotations

import numpy as np

from .timing import Point


def matmul_points(backends: list[str], n: int = 2048, n_cuda: int = 8192, seed: int = 0) -> list[Point]:
    """Interleavable matmul points for the libraries the benchmarked backends use."""
    rng = np.random.default_rng([seed, 31])
    points = []
    wanted = [("numpy-f32", "float32")]
    if "numpy-f64" in backends:
        wanted.append(("numpy-f64", "float64"))
    for name, dtype in wanted:
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        out = np.empty((n, n), dtype)
        points.append(Point(key=("matmul", name), step=lambda a=a, b=b, out=out: np.matmul(a, b, out=out),
                            family="numpy", flops=2 * n ** 3, meta={"n": n, "dtype": dtype, "library": "numpy"}))
    for name, device, size in (("torch-cpu-f32", "cpu", n), ("torch-cuda-f32", "cuda", n_cuda)):
        if name not in backends:
            continue
        import torch
        a = torch.randn(size, size, device=device)
        b = torch.randn(size, size, device=device)
        out = torch.empty(size, size, device=device)
        points.append(Point(key=("matmul", name), step=lambda a=a, b=b, out=out: torch.matmul(a, b, out=out),
                            family="torch" if device == "cpu" else "cuda", flops=2 * size ** 3,
                            cuda=device == "cuda", meta={"n": size, "dtype": "float32", "library": "torch"}))
    return points
