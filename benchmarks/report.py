"""The benchmark's outputs: bench.json (everything), bench.md (tables), and three figures.

    time_per_sample.png   ms per sample against batch size, log-log, one line per backend;
                          training and inference panels; the grey line is the time the
                          counted FLOPs would take at the machine's measured matmul rate
    memory.png            peak memory per backend against batch size (training and inference)
    scaling.png           training step time against hidden width (at the scaling batch) and
                          against batch size, with the a + b*B fit and the overhead-bound knee
    breakdown.png         where one training step's time goes, per backend: forward, backward and
                          optimizer as stacked bars, NumPy's forward + backward split into the
                          matmuls alone and everything else (written when the breakdown ran)
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .constants import DEFAULT_BACKENDS, KNEE_FALL, MODES

COLORS = {"numpy-f32": "#1f77b4", "numpy-f64": "#17becf", "torch-cpu-f32": "#d62728", "torch-cuda-f32": "#2ca02c"}
MODE_TITLES = {"train": "Training step (forward, backward, Adam)", "infer": "Inference (encode + decode)"}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [_jsonable(v) for v in (sorted(x) if isinstance(x, set) else x)]
    if hasattr(x, "item") and callable(x.item):       # NumPy scalars
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_all(results: dict, out: Path) -> dict:
    out = Path(out)
    files = {"json": out / "bench.json", "markdown": out / "bench.md", "time_per_sample": out / "time_per_sample.png",
             "memory": out / "memory.png", "scaling": out / "scaling.png"}
    plot_time_per_sample(results, files["time_per_sample"])
    plot_memory(results, files["memory"])
    plot_scaling(results, files["scaling"])
    if results.get("breakdown", {}).get("rows"):
        files["breakdown"] = out / "breakdown.png"
        plot_breakdown(results, files["breakdown"])
    results["files"] = {k: str(v) for k, v in files.items()}
    files["markdown"].write_text(markdown(results))
    files["json"].write_text(to_json(results))
    return results["files"]


def to_json(results: dict) -> str:
    return json.dumps(_jsonable(results), indent=1) + "\n"


# ------------------------------------------------------------------ markdown
def _fmt(x, spec=".3g", none="—"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return none
    return format(x, spec)


def _num(x):
    """Numbers readable at any scale: 0.0123, 1.23, 123, 12,345."""
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def _backend_order(name: str) -> int:
    return DEFAULT_BACKENDS.index(name) if name in DEFAULT_BACKENDS else len(DEFAULT_BACKENDS)


def table(results: dict, mode: str, arch: str) -> str:
    """The Markdown table of one mode for one architecture, skipped backends included."""
    rows = [r for r in results["points"] if r["mode"] == mode and r["arch"] == arch and "grid" in r["roles"]
            and r.get("count")]
    rows.sort(key=lambda r: (_backend_order(r["backend"]), r["batch"]))
    lines = ["| backend | batch | ms/step (median) | IQR (% of median) | samples/s | GFLOP/s | % of matmul peak "
             "| time ÷ numpy-f32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['batch']} | {_num(r['ms_per_step'])} | {_fmt(r['iqr_pct'], '.0f')}% "
                     f"| {_num(r['samples_per_s'])} | {_num(r['gflops'])} | {_fmt(r['pct_of_matmul_peak'], '.0f')}% "
                     f"| {_fmt(r['time_ratio_to_numpy_f32'], '.2f')} |")
    for backend, reason in results.get("skipped_backends", {}).items():
        lines.append(f"| {backend} | — | skipped: {reason} | | | | | |")
    return "\n".join(lines)


def bar_table(results: dict) -> str:
    bar, lines = results.get("bar", {}), []
    s = bar.get("train_b128_numpy_speedup_over_torch_cpu")
    if s:
        lines.append(f"| NumPy float32 training step vs torch CPU eager + torch.optim.Adam (torch time ÷ NumPy time) "
                     f"| {s['median']:.2f}× (IQR {s['q1']:.2f}–{s['q3']:.2f}) | ≥ 1.2× | {'yes' if s['met'] else 'no'} |")
    p = bar.get("train_b128_numpy_pct_of_matmul_peak")
    if p:
        lines.append(f"| NumPy float32 training step, % of the float32 matmul peak measured in the same run | {p['value']:.0f}% | ≥ 50% "
                     f"| {'yes' if p['met'] else 'no'} |")
    i = bar.get("infer_b1_numpy_speedup_over_torch_cpu")
    if i:
        lines.append(f"| Batch-1 inference: torch CPU time ÷ NumPy float32 time | {i['median']:.2f}× "
                     f"(IQR {i['q1']:.2f}–{i['q3']:.2f}) | reported | |")
    e = results.get("epoch")
    if e and "skipped" not in e:
        lines.append(f"| One epoch (train + test): ours (784-512-256, NumPy) vs PyTorch example (784-400-20) "
                     f"| {e['ours']['median_s']:.2f} s vs {e['example']['median_s']:.2f} s | ours < example "
                     f"| {'yes' if e['met'] else 'no'} |")
    elif e:
        lines.append(f"| One epoch, ours vs PyTorch example | skipped: {e['skipped']} | | |")
    if not lines:
        return ""
    return "\n".join(["| measure (784-512-256, latent 20, batch 128, float32) | value | target | met |",
                      "|---|---:|---:|:---:|", *lines])


def breakdown_table(results: dict) -> str:
    """Markdown: where one training step's time goes, per backend (empty without a breakdown)."""
    bd = results.get("breakdown")
    if not bd or not bd.get("rows"):
        return ""
    lines = [f"## Where the training step's time goes ({'-'.join(map(str, bd['hidden']))}, latent {bd['latent']}, "
             f"batch {bd['batch']})\n",
             "Each phase timed on its own, ms per step: the median over the repeats, and the repeat whose "
             "whole step was fastest (a quiet moment of a shared machine) (benchmarks/breakdown.py). "
             "*matmuls alone*: the step's matrix products replayed back to back with the same shapes and "
             "weights, as a fourth phase of each timed step; *other*: forward + backward minus those "
             "(bias, ReLU, loss, KL, checks, Python).\n",
             "| backend | forward | backward | optimizer | sum | matmuls alone | matmul GFLOP/s (% of peak) | other |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(bd["rows"], key=lambda r: (_backend_order(r["backend"]), r["stat"] != "median")):
        ms = r["ms"]
        pct = f" ({r['matmul_pct_of_peak']:.0f}%)" if r.get("matmul_pct_of_peak") is not None else ""
        name = r["backend"] if r["stat"] == "median" else f"{r['backend']}, fastest repeat"
        lines.append(f"| {name} | {_num(ms['forward'])} | {_num(ms['backward'])} | {_num(ms['optimizer'])} "
                     f"| {_num(r['step_ms'])} | {_fmt(ms.get('matmuls'), '.3g')} "
                     f"| {_fmt(r.get('matmul_gflops'), '.3g')}{pct} | {_fmt(r.get('other_ms'), '.3g')} |")
    return "\n".join(lines)


def _runs(side: dict) -> str:
    return ", ".join(f"{r['seconds']:.2f}" for r in side["runs"])


def markdown(results: dict) -> str:
    m, cfg = results["machine"], results["config"]
    la0, la1 = m.get("load_average_at_start"), m.get("load_average_at_end")
    load = (f"1-min load average {la0[0]:.2f} at the start, {la1[0]:.2f} at the end"
            if la0 and la1 else "load average unknown")
    peaks = "; ".join(f"{name}: {_num(p['gflops'])} GFLOP/s ({p['n']}×{p['n']} {p['library']}.matmul, "
                      f"IQR {_fmt(p.get('iqr_pct'), '.0f')}%)"
                      for name, p in results["matmul_peak"].items() if p.get("gflops"))
    parts = [f"# VAE benchmarks: NumPy vs PyTorch\n",
             f"**Machine:** {results['label']}  ",
             f"**Measured:** {m.get('date')}, {load}; {cfg['repeats']} interleaved repeats of ≈{cfg['target_s']} s "
             f"per point; data: {results['data']}  ",
             f"**Matrix-multiply rate, same run:** {peaks}\n"]
    if results.get("skipped_backends"):
        parts.append("**Skipped:** " + "; ".join(f"{b}: {r}" for b, r in results["skipped_backends"].items()) + "\n")
    bt = bar_table(results)
    if bt:
        parts += ["## The bar\n", bt, ""]
    for arch in cfg["archs"]:
        for mode in MODES:
            parts += [f"## {MODE_TITLES[mode]}: {arch}\n", table(results, mode, arch), ""]
    bd = breakdown_table(results)
    if bd:
        parts += [bd, ""]
    if results.get("knees"):
        parts += ["## Where each backend stops being overhead-bound\n",
                  f"Knee: the first batch size from which doubling the batch cuts the time per sample by less than "
                  f"{KNEE_FALL:.0%} (below it, fixed per-step cost dominates). Fit: ms/step = a + b·batch "
                  f"(relative least squares); a/b is where the two costs are equal.\n",
                  "| backend | arch | mode | knee batch | a: overhead ms/step | b: ms/sample | a/b |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for k in results["knees"]:
            parts.append(f"| {k['backend']} | {k['arch']} | {k['mode']} | {k['knee_batch'] or '> largest'} "
                         f"| {_fmt(k.get('overhead_ms'))} | {_fmt(k.get('ms_per_sample'))} "
                         f"| {_fmt(k.get('knee_batch_fit'))} |")
        parts.append("")
    if results.get("width_scaling"):
        parts += [f"## Training step against hidden width (batch {cfg['scaling_batch']})\n",
                  "| backend | hidden | ms/step | GFLOP/s | % of matmul peak |", "|---|---|---:|---:|---:|"]
        for w in results["width_scaling"]:
            parts.append(f"| {w['backend']} | {'-'.join(map(str, w['hidden']))} | {_num(w['ms_per_step'])} "
                         f"| {_num(w['gflops'])} | {_fmt(w['pct_of_matmul_peak'], '.0f')}% |")
        parts.append("")
    if results.get("memory"):
        parts += ["## Peak memory per point\n",
                  "CPU: peak resident set minus the process's resident set after imports (fresh process per point); "
                  "CUDA: torch.cuda.max_memory_allocated.\n",
                  "| backend | batch | training MB | inference MB | baseline RSS MB |", "|---|---:|---:|---:|---:|"]
        for r in sorted(results["memory"], key=lambda r: (_backend_order(r["backend"]), r["batch"])):
            if "error" in r:
                parts.append(f"| {r['backend']} | {r['batch']} | error: {r['error']} | | |")
            else:
                gpu = "cuda" in r["backend"]
                parts.append(f"| {r['backend']} | {r['batch']} | {_fmt(r.get('train_mb'), '.1f')}{' (GPU)' if gpu else ''} "
                             f"| {_fmt(r.get('infer_mb'), '.1f')}{' (GPU)' if gpu else ''} "
                             f"| {'—' if gpu else _fmt(r.get('baseline_rss_mb'), '.0f')} |")
        parts.append("")
    e = results.get("epoch")
    if e and "skipped" not in e:
        parts += ["## One epoch end to end (training + test evaluation), CPU\n",
                  "| model | params | epoch s (median) | runs |", "|---|---:|---:|---|",
                  f"| PyTorch example VAE (784-400-20, DataLoader + ToTensor) | {e['example']['runs'][0]['params']:,} "
                  f"| {e['example']['median_s']:.2f} | {_runs(e['example'])} |",
                  f"| ours, `vae train` defaults (NumPy float32, 784-512-256-20) | {e['ours']['runs'][0]['params']:,} "
                  f"| {e['ours']['median_s']:.2f} | {_runs(e['ours'])} |", ""]
    parts += ["## FLOP count\n", f"`{results['flops_formula']}` (see benchmarks/flops.py). "
              + "; ".join(f"{a}: {f['params']:,} parameters, {f['forward'] / 1e6:.3f} MFLOP forward and "
                          f"{f['train_step'] / 1e6:.3f} MFLOP per training step at batch 1 (plus "
                          f"{(f['forward'] + f['backward']) / 1e6:.3f} MFLOP per further sample)"
                          for a, f in results["flops"].items()) + "\n",
              "Figures: `time_per_sample.png`, `memory.png`, `scaling.png`.\n"]
    return "\n".join(parts)


# ------------------------------------------------------------------- figures
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _title(fig, what: str, results: dict) -> None:
    lines, line = [], ""
    for part in results["label"].split(", "):      # wrap between the label's parts, never inside one
        if line and len(line) + len(part) > 120:
            lines.append(line + ",")
            line = part
        else:
            line = f"{line}, {part}" if line else part
    label = "\n".join([*lines, line])
    fig.suptitle(f"{what}\n{label}", fontsize=9.5)


def _batch_axis(ax, batches) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches], fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", axis="y", alpha=0.1)


def _series(results: dict, backend: str, arch: str, mode: str, role: str = "grid") -> list[dict]:
    rows = [r for r in results["points"] if r["backend"] == backend and r["arch"] == arch and r["mode"] == mode
            and role in r["roles"] and r.get("count")]
    return sorted(rows, key=lambda r: r["batch"] if role == "grid" else r["hidden"][0])


def _backends(results: dict) -> list[str]:
    return sorted(results["backends"], key=_backend_order)


def _skipped_note(ax, results: dict) -> None:
    skipped = results.get("skipped_backends")
    if skipped:
        ax.text(0.01, 0.01, "skipped: " + "; ".join(f"{b} ({r.split(' (')[0]})" for b, r in skipped.items()),
                transform=ax.transAxes, fontsize=7, color="0.4", va="bottom")


def plot_time_per_sample(results: dict, path: Path) -> None:
    plt = _plt()
    archs = list(results["config"]["archs"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4))
    peak = results["matmul_peak"].get("numpy-f32", {}).get("gflops")
    cuda_peak = results["matmul_peak"].get("torch-cuda-f32", {}).get("gflops")
    knees = {(k["backend"], k["arch"], k["mode"]): k["knee_batch"] for k in results.get("knees", [])}
    for ax, mode in zip(axes, MODES):
        batches = set()
        for a_i, arch in enumerate(archs):
            for backend in _backends(results):
                rows = _series(results, backend, arch, mode)
                if not rows:
                    continue
                b = [r["batch"] for r in rows]
                batches.update(b)
                y = [r["ms_per_sample"] for r in rows]
                err = [[(r["median_s"] - r["q1_s"]) * 1e3 / r["batch"] for r in rows],
                       [(r["q3_s"] - r["median_s"]) * 1e3 / r["batch"] for r in rows]]
                name = backend if len(archs) == 1 else f"{backend} {arch}"
                ax.errorbar(b, y, yerr=err, marker="o", ms=4, lw=1.6, capsize=2, color=COLORS.get(backend),
                            ls=["-", "--", ":"][a_i % 3], label=name)
                knee = knees.get((backend, arch, mode))
                if knee in b:
                    ax.plot([knee], [y[b.index(knee)]], marker="o", ms=11, mfc="none", mew=1.5,
                            color=COLORS.get(backend))
            rows = _series(results, "numpy-f32", arch, mode) or _series(results, _backends(results)[0], arch, mode)
            if peak and rows:
                b = [r["batch"] for r in rows]
                ax.plot(b, [r["flops"] / r["batch"] / (peak * 1e9) * 1e3 for r in rows], color="0.5", ls="--", lw=1,
                        label=f"counted FLOPs at the CPU matmul rate ({peak:.0f} GFLOP/s)" if a_i == 0 else None)
            if cuda_peak and rows:
                b = [r["batch"] for r in rows]
                ax.plot(b, [r["flops"] / r["batch"] / (cuda_peak * 1e9) * 1e3 for r in rows], color="0.5", ls=":",
                        lw=1, label=f"same at the GPU matmul rate ({cuda_peak:.0f} GFLOP/s)" if a_i == 0 else None)
        ax.set_yscale("log")
        if batches:
            _batch_axis(ax, sorted(batches))
        ax.set_xlabel("batch size")
        ax.set_ylabel("milliseconds per sample")
        ax.set_title(MODE_TITLES[mode] + f"\nopen circle: knee (from there, doubling the batch saves < {KNEE_FALL:.0%} "
                     f"per sample)", fontsize=10)
        ax.legend(fontsize=7.5)
        _skipped_note(ax, results)
    _title(fig, f"VAE {', '.join(archs)}: time per sample against batch size (median, IQR bars)", results)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_memory(results: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 5.4))
    mem = [r for r in results.get("memory", []) if "error" not in r]
    batches = sorted({r["batch"] for r in mem})
    for backend in _backends(results):
        for arch in results["config"]["archs"]:
            rows = sorted((r for r in mem if r["backend"] == backend and r["arch"] == arch), key=lambda r: r["batch"])
            if not rows:
                continue
            base = rows[0].get("baseline_rss_mb")
            cuda = backend.endswith("cuda-f32")
            extra = " (GPU)" if cuda else (f", process baseline {base:.0f} MB" if base else "")
            b = [r["batch"] for r in rows]
            ax.plot(b, [r["train_mb"] for r in rows], marker="o", ms=4, color=COLORS.get(backend),
                    label=f"{backend} training{extra}")
            ax.plot(b, [r["infer_mb"] for r in rows], marker="s", ms=3, ls="--", color=COLORS.get(backend),
                    label=f"{backend} inference")
    ax.set_yscale("log")
    if batches:
        _batch_axis(ax, batches)
    ax.set_xlabel("batch size")
    ax.set_ylabel("peak memory of the point, MB")
    ax.set_title("CPU: peak RSS minus the RSS after imports (fresh process per point);  "
                 "CUDA: torch.cuda.max_memory_allocated", fontsize=8.5)
    if mem:
        ax.legend(fontsize=7.5)
    else:
        ax.text(0.5, 0.5, "memory not measured", transform=ax.transAxes, ha="center")
    _skipped_note(ax, results)
    _title(fig, "VAE: peak memory against batch size (weights, gradients, Adam state, batch, activations)", results)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_scaling(results: dict, path: Path) -> None:
    plt = _plt()
    fig, (ax_w, ax_b) = plt.subplots(1, 2, figsize=(13, 5.4))
    cfg = results["config"]
    peak = results["matmul_peak"].get("numpy-f32", {}).get("gflops")
    arch = next(iter(cfg["archs"]))
    widths = sorted({w["width"] for w in results.get("width_scaling", [])})
    for backend in _backends(results):
        rows = [w for w in results.get("width_scaling", []) if w["backend"] == backend and w["arch"] == arch]
        if rows:
            ax_w.plot([w["width"] for w in rows], [w["ms_per_step"] for w in rows], marker="o", ms=4,
                      color=COLORS.get(backend), label=backend)
    if peak and widths:
        any_rows = [w for w in results["width_scaling"] if w["arch"] == arch]
        by_width = {w["width"]: w["flops"] for w in any_rows}
        ax_w.plot(widths, [by_width[w] / (peak * 1e9) * 1e3 for w in widths], color="0.5", ls="--", lw=1,
                  label=f"counted FLOPs at the CPU matmul rate ({peak:.0f} GFLOP/s)")
    if widths:
        ax_w.set_xscale("log", base=2)
        ax_w.set_xticks(widths)
        ax_w.set_xticklabels([f"{w}-{round(w / 2)}" for w in widths], fontsize=8)
        ax_w.legend(fontsize=7.5)
    ax_w.set_yscale("log")
    ax_w.grid(True, alpha=0.3)
    ax_w.set_xlabel("hidden widths (encoder; the decoder mirrors them)")
    ax_w.set_ylabel("ms per training step")
    ax_w.set_title(f"Training step against hidden width, batch {cfg['scaling_batch']}", fontsize=10)

    fits = {(k["backend"], k["mode"]): k for k in results.get("knees", []) if k["arch"] == arch}
    batches = set()
    for backend in _backends(results):
        rows = _series(results, backend, arch, "train")
        if not rows:
            continue
        b = [r["batch"] for r in rows]
        batches.update(b)
        ax_b.plot(b, [r["ms_per_step"] for r in rows], marker="o", ms=4, color=COLORS.get(backend), label=backend)
        k = fits.get((backend, "train"), {})
        if k.get("overhead_ms") is not None:
            dense = np.geomspace(b[0], b[-1], 200)
            ax_b.plot(dense, k["overhead_ms"] + k["ms_per_sample"] * dense, ls=":", lw=1.2, color=COLORS.get(backend))
        if k.get("knee_batch") in b:
            y = rows[b.index(k["knee_batch"])]["ms_per_step"]
            ax_b.plot([k["knee_batch"]], [y], marker="o", ms=11, mfc="none", mew=1.5, color=COLORS.get(backend))
            ax_b.annotate(f"knee {k['knee_batch']}", (k["knee_batch"], y), textcoords="offset points",
                          xytext=(-10, 10), fontsize=7.5, color=COLORS.get(backend), ha="right")
    ax_b.set_yscale("log")
    if batches:
        _batch_axis(ax_b, sorted(batches))
        ax_b.legend(fontsize=7.5)
    ax_b.set_xlabel("batch size")
    ax_b.set_ylabel("ms per training step")
    ax_b.set_title(f"Training step against batch size ({arch}); dotted: fit a + b·batch;\n"
                   f"circle: knee, after which doubling the batch saves < {KNEE_FALL:.0%} time per sample",
                   fontsize=10)
    _skipped_note(ax_b, results)
    _title(fig, "VAE: how the training step scales", results)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_breakdown(results: dict, path: Path) -> None:
    """Stacked horizontal bars: ms per training step by phase, one bar per backend."""
    plt = _plt()
    bd = results["breakdown"]
    rows = sorted((r for r in bd["rows"] if r["stat"] == "median"), key=lambda r: _backend_order(r["backend"]))
    fig, ax = plt.subplots(figsize=(11, 2.2 + 0.75 * len(rows)))
    colors = {"matmuls (forward + backward)": "#4c72b0", "forward": "#8fb0d9", "backward": "#c7d7ee",
              "other (elementwise, checks, Python)": "#dd8452", "optimizer (Adam)": "#55a868"}
    for y, r in enumerate(rows):
        ms = r["ms"]
        if "matmuls" in ms:
            parts = [("matmuls (forward + backward)", ms["matmuls"]),
                     ("other (elementwise, checks, Python)", max(0.0, r["other_ms"]))]
        else:
            parts = [("forward", ms["forward"]), ("backward", ms["backward"])]
        parts.append(("optimizer (Adam)", ms["optimizer"]))
        left = 0.0
        for name, width in parts:
            ax.barh(y, width, left=left, color=colors[name], edgecolor="white",
                    label=name if name not in ax.get_legend_handles_labels()[1] else None)
            if width > 0.06 * sum(w for _, w in parts):
                ax.text(left + width / 2, y, f"{width:.2g}", ha="center", va="center", fontsize=8)
            left += width
        ax.text(left, y, f"  {left:.3g} ms", va="center", fontsize=8.5)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["backend"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms per training step (median; each phase timed on its own)")
    ax.set_xlim(0, max(r["step_ms"] for r in rows) * 1.15)
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=5, frameon=False)
    ax.grid(True, axis="x", alpha=0.3)
    _title(fig, f"VAE: where one training step's time goes ({'-'.join(map(str, bd['hidden']))}, "
                f"latent {bd['latent']}, batch {bd['batch']})", results)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
