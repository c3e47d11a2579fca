"""Benchmarks: NumPy against PyTorch on CPU and CUDA, interleaved, against the machine's own rates.

    vae bench [--quick] [--peers | --conv | --load] [--cuda] [--epoch]     or     python -m benchmarks ...
    bash benchmarks/gpu_check.sh OUT_DIR      everything CUDA, offline, in 8 minutes (parity tests, benchmark)
    python -m benchmarks.serve_load           the `vae serve` load test

timing (torch.utils.benchmark Timers, interleaved rounds, paired ratios, peak memory), flops (the
FLOP count and the floor), steps (what is timed), runner (the run and its analysis), report (tables
and figures), machine (what it ran on), epoch (an epoch against the PyTorch example), cli (the options).
"""
