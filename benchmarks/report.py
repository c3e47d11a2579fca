"""The outputs: NAME.json (everything), NAME.md (the tables) and, for the full run, four figures.

NAME is the preset's: bench (the full run), peers, conv or load.  Figures of the full run:
time_per_step.png (ms per step against batch, per contestant, the floor dashed), memory.png (peak
memory of one step), scaling.png (step time against hidden width, and against batch with the
a + b*B fit), breakdown.png (forward, backward, optimizer per contestant; matmuls alone beside).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .runner import KNEE_FALL

NAMES = {"full": "bench", "peers": "peers", "conv": "conv", "load": "load"}
MODE_TITLES = {"train": "Training step (train_step: checks, forward, backward, Adam)",
               "infer": "Inference (encode + decode)"}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        return x.item()
    return None if isinstance(x, float) and not math.isfinite(x) else x


def num(x, spec: str = ".3g") -> str:
    """Readable at any scale: 0.0123, 1.23, 123, 12,345; — for None."""
    if x is None:
        return "—"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.0f}" if abs(x) >= 100 else format(x, spec)


def _ratio(r: dict | None) -> str:
    return "—" if not r else f"{r['median']:.2f} ({r['q1']:.2f}–{r['q3']:.2f})"


def _grid(results: dict, mode: str = "train") -> list[dict]:
    return [r for r in results["points"] if r["mode"] == mode and r["role"] == "grid"]


def headline_table(results: dict) -> str:
    """Per batch: every contestant's training step (ms ± IQR %), and the best torch ÷ NumPy, paired."""
    rows = {(r["backend"], r["batch"]): r for r in _grid(results)}
    names = list(dict.fromkeys(r["backend"] for r in _grid(results)))
    adam = {r["backend"]: r["adam"] for r in _grid(results) if r.get("adam")}
    head = [f"{n} ({adam[n]} Adam)" if n in adam else n for n in names]
    lines = ["| batch | " + " | ".join(head) + " | best torch ÷ NumPy (IQR) |", "|---:|" + "---:|" * (len(names) + 1)]
    for h in results["headline"]:
        cells = []
        for n in names:
            r = rows.get((n, h["batch"]))
            cells.append("—" if r is None else f"not timed: {r['failed']}" if "failed" in r
                         else f"{num(r['ms'])} ms ± {r['iqr_pct']:.0f}%")
        lines.append(f"| {h['batch']} | " + " | ".join(cells) + f" | **{_ratio(h['best_torch_over_numpy'])}**, "
                     f"{h['best']} |")
    return "\n".join(lines)


def point_table(results: dict, mode: str) -> str:
    """Every contestant and batch: median, IQR, samples/s, GFLOP/s, % of the matmul rate, the floor, the ratio."""
    lines = ["| backend | batch | ms/step (median) | IQR (% of median) | samples/s | GFLOP/s | % of matmul rate "
             "| floor ms | % of floor | time ÷ numpy-f32 (IQR) |", "|---|---:|" + "---:|" * 8]
    for r in _grid(results, mode):
        if "failed" in r:
            lines.append(f"| {r['backend']} | {r['batch']} | not timed: {r['failed']} |" + " |" * 7)
            continue
        pct = lambda x: "—" if x is None else f"{x:.0f}%"        # noqa: E731
        lines.append(f"| {r['backend']} | {r['batch']} | {num(r['ms'])} | {pct(r['iqr_pct'])} "
                     f"| {num(r['samples_per_s'])} | {num(r['gflops'])} | {pct(r['pct_of_matmul'])} "
                     f"| {num(r['floor_ms'])} | {pct(r['pct_of_floor'])} | {_ratio(r['ratio_to_numpy']) if r['ratio_to_numpy'] else '1'} |")
    return "\n".join(lines)


def bar_table(results: dict) -> str:
    """The targets as numbers (the suite never asserts on them)."""
    lines = [f"| NumPy training step at batch {h['batch']}: best torch ({h['best']}) time ÷ NumPy time "
             f"| {_ratio(h['best_torch_over_numpy'])} | ≥ {h['target']} | {'yes' if h['met'] else 'no'} |"
             for h in results["headline"] if "target" in h]
    pts = {(r["backend"], r["mode"], r["batch"]): r for r in _grid(results) + _grid(results, "infer") if "ms" in r}
    r = pts.get(("numpy-f32", "train", 128))
    if r and r["pct_of_matmul"] is not None:
        lines.append(f"| NumPy training step at batch 128, % of the float32 matmul rate | {r['pct_of_matmul']:.0f}% "
                     f"| ≥ 50% | {'yes' if r['pct_of_matmul'] >= 50 else 'no'} |")
    for name in ("torch-fused", "torch-default"):
        r = pts.get((name, "infer", 1))
        if r and r["ratio_to_numpy"]:
            lines.append(f"| Batch-1 inference, {name} time ÷ NumPy time | {_ratio(r['ratio_to_numpy'])} | reported | |")
            break
    e = results.get("epoch")
    if e:
        lines.append(f"| One epoch (train + test): ours vs the PyTorch example VAE | skipped: {e['skipped']} | | |"
                     if "skipped" in e else f"| One epoch (train + test): ours ({e['ours']['runs'][0]['params']:,} "
                     f"params) vs the PyTorch example VAE ({e['example']['runs'][0]['params']:,}) | "
                     f"{e['ours']['median_s']:.2f} s vs {e['example']['median_s']:.2f} s | ours faster "
                     f"| {'yes' if e['met'] else 'no'} |")
    return "\n".join(["| measure | value | target | met |", "|---|---:|---:|:---:|", *lines]) if lines else ""


def alone_table(results: dict) -> str:
    rows = [r for r in results.get("alone", []) if r.get("count")]
    if not rows:
        return ""
    return "\n".join([f"| optimizer alone ({rows[0]['params']:,} float32 parameters) | ms/step (median) | IQR |",
                      "|---|---:|---:|", *(f"| {r['what']} | {num(r['median_s'] * 1e3)} | {r['iqr_pct']:.0f}% |"
                                           for r in rows)])


def breakdown_table(results: dict) -> str:
    bd = results.get("breakdown")
    if not bd:
        return ""
    lines = [f"Each phase of the step at batch {bd['batch']} timed on its own, ms per step: the median over the "
             "repeats, and the repeat whose whole step was fastest. *matmuls alone*: the step's matrix products "
             "replayed with the same shapes (numpy.matmul or torch.mm), the floor; *other*: forward + backward "
             "minus those (bias, ReLU, loss, KL, checks, Python).\n",
             "| backend | forward | backward | optimizer | sum | matmuls alone (the floor) | matmul GFLOP/s (% of rate) "
             "| other |", "|---|" + "---:|" * 7]
    for r in bd["rows"]:
        ms, pct = r["ms"], f" ({r['matmul_pct']:.0f}%)" if r["matmul_pct"] is not None else ""
        name = r["backend"] + (", fastest repeat" if r["stat"] == "fastest" else "")
        lines.append(f"| {name} | {num(ms['forward'])} | {num(ms['backward'])} | {num(ms['optimizer'])} "
                     f"| {num(r['step_ms'])} | {num(ms['matmuls'])} | {num(r['matmul_gflops'])}{pct} "
                     f"| {num(r['other_ms'])} |")
    return "\n".join(lines)


def memory_table(results: dict) -> str:
    rows = results.get("memory")
    if not rows:
        return ""
    return "\n".join(["Peak memory of one step beyond what was held before it, MB (NumPy: tracemalloc; torch on the "
                      "CPU: the resident set's high-water mark; CUDA: torch.cuda.max_memory_allocated).\n",
                      "| backend | batch | training | inference |", "|---|---:|---:|---:|",
                      *(f"| {r['backend']} | {r['batch']} | {num(r.get('train_mb'))} | {num(r.get('infer_mb'))} |"
                        for r in rows)])


def scaling_tables(results: dict) -> str:
    parts = []
    if results.get("knees"):
        parts += [f"Knee: the first batch from which doubling the batch cuts the time per sample by less than "
                  f"{KNEE_FALL:.0%}. Fit: ms/step = a + b·batch (relative least squares); a/b is where the two "
                  "costs are equal.\n", "| backend | mode | knee batch | a: overhead ms/step | b: ms/sample | a/b |",
                  "|---|---|---:|---:|---:|---:|",
                  *(f"| {k['backend']} | {k['mode']} | {k['knee_batch'] or '> largest'} | {num(k.get('overhead_ms'))} "
                    f"| {num(k.get('ms_per_sample'))} | {num(k.get('knee_batch_fit'))} |" for k in results["knees"]), ""]
    widths = [r for r in results["points"] if r["role"] == "width" and "ms" in r]
    if widths:
        parts += ["| backend | hidden | batch | ms/step | GFLOP/s | % of matmul rate |", "|---|---|---:|---:|---:|---:|",
                  *(f"| {r['backend']} | {'-'.join(map(str, r['hidden']))} | {r['batch']} | {num(r['ms'])} "
                    f"| {num(r['gflops'])} | {num(r['pct_of_matmul'], '.0f')}% |" for r in widths)]
    return "\n".join(parts)


def layer_table(results: dict) -> str:
    if not results.get("layers"):
        return ""
    return "\n".join(["| layer (forward + backward alone) | NumPy ms | torch ms | NumPy ÷ torch |", "|---|---:|---:|---:|",
                      *(f"| {r['layer']} | {num(r['numpy_ms'])} | {num(r['torch_ms'])} | "
                        f"{r['numpy_ms'] / r['torch_ms']:.2f} |" for r in results["layers"])])


def load_table(results: dict) -> str:
    lines = ["| backend | batch | 1 thread, quiet | 1 thread, one core busy | 2 threads, quiet | 2 threads, one core "
             "busy | busy: 2 threads ÷ 1 thread |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        v = [r[f"t{t}_{s}_ms"] for t in (1, 2) for s in ("quiet", "busy")]
        ratio = f"{v[3] / v[1]:.2f}" if v[1] and v[3] else "—"
        lines.append(f"| {r['backend']} | {r['batch']} | " + " | ".join(num(x) for x in v) + f" | {ratio} |")
    return "\n".join(lines)


def rates_line(results: dict) -> str:
    return "; ".join(f"{k}: {num(v.get('gflops'))} GFLOP/s ({v.get('n')}² matmul), one memory pass "
                     f"{num(v.get('pass_gbytes'))} GB/s" for k, v in results["rates"].items())


def markdown(results: dict) -> str:
    cfg = results["config"]
    if cfg["preset"] == "load":
        return "\n".join([f"# Threads under load ({'-'.join(map(str, cfg['hidden']))}, latent {cfg['latent']}, "
                          "float32; median ms per train_step)\n", f"**Machine:** {results['label']}\n",
                          load_table(results), ""])
    parts = [f"# Benchmark ({cfg['preset']}): NumPy against torch ({cfg['arch']}, "
             f"{'-'.join(map(str, cfg['hidden'])) if cfg['arch'] == 'mlp' else 'fixed layers'}, latent "
             f"{cfg['latent']}, {results['params']:,} parameters; torch on {cfg['device']})\n",
             f"**Machine:** {results['label']}  ", f"**Measured:** {results['machine'].get('date')}; {cfg['repeats']} "
             f"interleaved repeats of ≈{cfg['target_s']} s per point (torch.utils.benchmark.Timer, "
             f"{cfg['threads_used']} threads); data: {results['data']}  ",
             f"**Quiet-machine check:** {results['quiet']['verdict']}  ", f"**Rates, same run:** {rates_line(results)}\n",
             "Cells: median ms per step ± IQR as % of the median. *best torch ÷ NumPy*: the fastest torch "
             "contestant's time ÷ NumPy's, per repeat (paired), median and IQR: above 1, NumPy is faster. *floor*: "
             "the step's counted FLOPs at the matmul rate plus one memory pass over parameters, gradients and moments.\n"]
    if results["headline"]:
        parts += ["## Training step: NumPy against the best torch\n", headline_table(results), ""]
    for mode in cfg["modes"]:
        parts += [f"## {MODE_TITLES[mode]}\n", point_table(results, mode), ""]
    for title, text in (("The targets", bar_table(results)), ("The optimizer alone", alone_table(results)),
                        ("Where the training step's time goes", breakdown_table(results)),
                        ("Layers of the conv VAE", layer_table(results)), ("Peak memory", memory_table(results)),
                        ("Scaling: overhead-bound knee, hidden width", scaling_tables(results))):
        if text:
            parts += [f"## {title}\n", text, ""]
    parts += ["## torch.utils.benchmark.Compare of the same samples\n", "```", results.get("compare", ""), "```",
              "", f"FLOPs: `{results['flops_formula']}` (benchmarks/flops.py).", ""]
    return "\n".join(parts)


def write(results: dict, out) -> list[str]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = NAMES[results["config"]["preset"]]
    files = [out / f"{name}.md", out / f"{name}.json"]
    if results["config"]["preset"] == "full":
        for fig, plot in (("time_per_step", plot_time), ("memory", plot_memory), ("scaling", plot_scaling),
                          ("breakdown", plot_breakdown)):
            if plot(results, out / f"{fig}.png"):
                files.append(out / f"{fig}.png")
    files[0].write_text(markdown(results))
    files[1].write_text(json.dumps(_jsonable(results), indent=1) + "\n")
    return [str(f) for f in files]


# ---------------------------------------------------------------------- figures
def _figure(ncols: int):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 5.2), squeeze=False)
    return plt, fig, axes[0]


def _save(plt, fig, path, title: str, results: dict) -> bool:
    fig.suptitle(f"{title}\n{results['label']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _log2_batches(ax, batches) -> None:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(batches, [str(b) for b in batches], fontsize=8)
    ax.set_xlabel("batch size")
    ax.grid(True, alpha=0.3)


def plot_time(results: dict, path) -> bool:
    plt, fig, axes = _figure(len(results["config"]["modes"]))
    for ax, mode in zip(axes, results["config"]["modes"]):
        rows = [r for r in _grid(results, mode) if "ms" in r]
        for name in dict.fromkeys(r["backend"] for r in rows):
            mine = [r for r in rows if r["backend"] == name]
            b = [r["batch"] for r in mine]
            line = ax.errorbar(b, [r["ms"] for r in mine], yerr=[[r["ms"] - r["q1_s"] * 1e3 for r in mine],
                                                                 [r["q3_s"] * 1e3 - r["ms"] for r in mine]],
                               marker="o", ms=4, capsize=2, label=name)
            if mine[0]["floor_ms"] is not None:
                ax.plot(b, [r["floor_ms"] for r in mine], ls="--", lw=1, color=line[0].get_color(),
                        label=f"{name}: floor")
        if rows:
            _log2_batches(ax, sorted({r["batch"] for r in rows}))
        ax.set_ylabel("ms per step (median, IQR bars)")
        ax.set_title(MODE_TITLES[mode], fontsize=10)
        ax.legend(fontsize=7)
    return _save(plt, fig, path, "Time per step against batch; dashed: the floor (FLOPs at the matmul rate + one "
                 "memory pass)", results)


def plot_memory(results: dict, path) -> bool:
    rows = results.get("memory") or []
    if not rows:
        return False
    plt, fig, axes = _figure(1)
    for name in dict.fromkeys(r["backend"] for r in rows):
        for mode, ls in (("train", "-"), ("infer", ":")):
            mine = [r for r in rows if r["backend"] == name and r.get(f"{mode}_mb")]
            if mine:
                axes[0].plot([r["batch"] for r in mine], [r[f"{mode}_mb"] for r in mine], ls=ls, marker="o", ms=4,
                             label=f"{name}, {mode}")
    _log2_batches(axes[0], sorted({r["batch"] for r in rows}))
    axes[0].set_ylabel("MB")
    axes[0].legend(fontsize=7)
    return _save(plt, fig, path, "Peak memory of one step", results)


def plot_scaling(results: dict, path) -> bool:
    widths = [r for r in results["points"] if r["mode"] == "train" and "ms" in r and
              r["batch"] == results["config"]["scaling_batch"]]
    plt, fig, (ax_w, ax_b) = _figure(2)
    fits = {k["backend"]: k for k in results["knees"] if k["mode"] == "train"}
    for name in dict.fromkeys(r["backend"] for r in widths):
        mine = sorted((r for r in widths if r["backend"] == name), key=lambda r: r["hidden"][0])
        ax_w.plot([r["hidden"][0] for r in mine], [r["ms"] for r in mine], marker="o", ms=4, label=name)
        grid = [r for r in _grid(results) if r["backend"] == name and "ms" in r]
        line = ax_b.plot([r["batch"] for r in grid], [r["ms"] for r in grid], marker="o", ms=4, label=name)
        k = fits.get(name, {})
        if k.get("overhead_ms") is not None:
            ax_b.plot([r["batch"] for r in grid], [k["overhead_ms"] + k["ms_per_sample"] * r["batch"] for r in grid],
                      ls=":", color=line[0].get_color())
        if k.get("knee_batch"):
            ax_b.axvline(k["knee_batch"], color=line[0].get_color(), lw=0.8, alpha=0.5)
    ax_w.set_xscale("log", base=2)
    ax_w.set(yscale="log", xlabel="first hidden width", ylabel="ms per training step")
    ax_w.set_title(f"against width (batch {results['config']['scaling_batch']})", fontsize=10)
    batches = sorted({r["batch"] for r in _grid(results) if "ms" in r})
    if batches:
        _log2_batches(ax_b, batches)
    ax_b.set_title("against batch: dotted a + b·batch, vertical: the knee", fontsize=10)
    for ax in (ax_w, ax_b):
        ax.legend(fontsize=7)
    return _save(plt, fig, path, "Scaling of the training step", results)


def plot_breakdown(results: dict, path) -> bool:
    bd = results.get("breakdown")
    if not bd:
        return False
    rows = [r for r in bd["rows"] if r["stat"] == "median"]
    plt, fig, axes = _figure(1)
    ax, bottom = axes[0], [0.0] * len(rows)
    for phase in ("forward", "backward", "optimizer"):
        v = [r["ms"][phase] for r in rows]
        ax.bar(range(len(rows)), v, 0.4, bottom=bottom, label=phase)
        bottom = [b + x for b, x in zip(bottom, v)]
    ax.bar([i + 0.42 for i in range(len(rows))], [r["ms"]["matmuls"] for r in rows], 0.25, color="0.6",
           label="matmuls alone (the floor)")
    ax.set_xticks(range(len(rows)), [r["backend"] for r in rows], fontsize=8)
    ax.set_ylabel(f"ms per training step, batch {bd['batch']} (median)")
    ax.legend(fontsize=8)
    return _save(plt, fig, path, "Where one training step's time goes", results)
