"""Benchmarks of issue 4: NumPy against PyTorch on CPU and CUDA, interleaved, against the machine's matmul rate.

    vae bench [--quick] [--epoch] ...      or      python -m benchmarks ...

One module per idea: flops (the FLOP formula), machine (what it ran on),
steps (the measured closures), timing (interleaved timing), matmul_peak (the
machine's rate), memory (peak memory per point), epoch (end-to-end epoch
against the PyTorch example), breakdown (where one step's time goes), runner
(the run and its analysis), report (JSON, Markdown, figures), cli (the options).
"""
