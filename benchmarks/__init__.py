"""Benchmarks of issues 4 and 15: NumPy against PyTorch on CPU and CUDA, interleaved, against the matmul rate.

    vae bench [--quick] [--epoch] ...      or      python -m benchmarks ...
    vae bench --peers-only [--device cuda]  the headline: NumPy's train_step against the best torch (peers.py)
    vae bench --load-test                   threads under load: a busy core, 1 vs 2 threads (load.py)
    bash benchmarks/gpu_check.sh OUT_DIR    everything CUDA, offline, in 8 minutes (parity tests, benchmark)

One module per idea: flops (the FLOP formula), machine (what it ran on),
steps (the measured closures), timing (interleaved timing), matmul_peak (the
machine's rate), memory (peak memory per point), epoch (end-to-end epoch
against the PyTorch example), breakdown (where one step's time goes), runner
(the run and its analysis), report (JSON, Markdown, figures), cli (the options), peers (the
headline against torch's best: default, foreach and fused Adam, torch.compile), adam_alone (the
NumPy Adam before issue 15, for the optimizer-alone rows), load (threads under load).
"""
