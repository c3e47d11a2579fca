"""The paper's table: committed runs of the ``burda`` preset beside Burda et al. (2015)'s figures.

Burda, Grosse and Salakhutdinov, "Importance Weighted Autoencoders", Table 1, MNIST, one stochastic
layer: the test negative log-likelihood, estimated with k = 5000 importance samples, of 784-200-200-50
tanh models trained for 3,280 epochs.  ``read_results`` reads every run folder under a results folder
(its last.npz: config, epoch, per-epoch metrics; its evaluations.csv: the k = 5000 estimates saved by
`vae evaluate` as the run went on); ``markdown`` prints the table docs/results.md shows and ``plot_progress``
draws how each run approached its row.  `vae paper-table` runs all three.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..presets import PRESETS
from ..training.checkpoint import CheckpointError, load_checkpoint
from .evaluations import read_history
from .figures import _pyplot, _save

#: (objective, samples K trained with) -> (row label, the paper's test NLL in nats at k = 5000)
PAPER_ROWS = {
    ("elbo", 1): ("VAE, trained with k = 1", 86.76),
    ("iwae", 1): ("IWAE, trained with k = 1 (the VAE)", 86.76),
    ("iwae", 5): ("IWAE, trained with k = 5", 85.54),
    ("iwae", 50): ("IWAE, trained with k = 50", 84.78),
}
PAPER_K = 5000
PAPER_EPOCHS = PRESETS["burda"]["epochs"]
TEST_IMAGES = 10_000
#: how close counts as reproduced (the issue's bar): within a nat of the paper's figure
BAR_NATS = 1.0


@dataclass
class ResultRow:
    """One run folder, read for the table."""
    name: str
    label: str
    paper: float | None             # the paper's figure, None where the run is not the paper's setup
    epoch: int                      # epochs trained
    epochs: int                     # epochs its schedule has
    hours: float                    # wall time of the epochs trained, from metrics
    curve: list[tuple[int, float]]  # (epoch, test negative ELBO)
    history: list[dict] = field(default_factory=list)   # evaluations.csv rows at k = PAPER_K, oldest first

    @property
    def latest(self) -> dict | None:
        return self.history[-1] if self.history else None


def is_paper_setup(config: dict) -> bool:
    """The run trains the ``burda`` preset's model on its data with its schedule (any objective)."""
    return all((tuple(config.get(k) or ()) if k == "hidden" else config.get(k)) == v
               for k, v in PRESETS["burda"].items())


def read_run(folder: Path) -> ResultRow:
    """A run folder's row; CheckpointError or ValueError name the file that cannot be read."""
    folder = Path(folder)
    _, _, meta = load_checkpoint(folder / "last.npz")
    config, metrics = meta.get("config"), meta.get("metrics")
    if not isinstance(config, dict) or not isinstance(metrics, list) or "epoch" not in meta:
        raise CheckpointError(f"{folder / 'last.npz'}: no config, epoch and metrics in it; pass a run folder "
                              f"written by `vae train`")
    samples = config.get("samples", 1) if config.get("objective") == "iwae" else 1
    key = (config.get("objective", "elbo"), samples)
    label, paper = PAPER_ROWS.get(key, (f"{key[0]}, trained with k = {samples}", None))
    if not is_paper_setup(config):
        paper = None
        label += " (not the paper's setup)"
    history = [r for r in read_history(folder) if r["k"] == PAPER_K]
    return ResultRow(name=folder.name, label=label, paper=paper, epoch=int(meta["epoch"]),
                     epochs=int(config.get("epochs", 0)), hours=sum(float(r["seconds"]) for r in metrics) / 3600,
                     curve=[(int(r["epoch"]), float(r["test_loss"])) for r in metrics], history=history)


def read_results(results_dir: Path) -> list[ResultRow]:
    """Every run folder (a subfolder holding last.npz) under ``results_dir``: the paper's rows in its order
    (VAE, then IWAE by k), then the rest, by name."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise CheckpointError(f"{results_dir}: no such folder; pass the folder holding the run folders "
                              f"(docs/results)")
    folders = sorted(p.parent for p in results_dir.glob("*/last.npz"))
    if not folders:
        raise CheckpointError(f"{results_dir} holds no run folder (a subfolder with last.npz); pass the folder "
                              f"holding the run folders (docs/results)")
    return sorted((read_run(f) for f in folders), key=lambda r: (r.paper is None, -(r.paper or 0), r.name))


def _estimate(row: ResultRow) -> str:
    latest = row.latest
    if latest is None:
        return f"not evaluated at k = {PAPER_K} (`vae evaluate {row.name} --limit N`)"
    whole = latest["images"] == TEST_IMAGES
    images = f"all {TEST_IMAGES:,} test images" if whole else f"first {latest['images']:,} test images"
    stale = "" if latest["epoch"] == row.epoch else f", at epoch {latest['epoch']}"
    return f"{latest['iwae_nll']:.2f} ± {latest['iwae_nll_se']:.2f} ({images}{stale})"


def _verdict(row: ResultRow) -> str:
    latest = row.latest
    if row.paper is None or latest is None:
        return "—"
    gap = latest["iwae_nll"] - row.paper
    return f"{gap:+.2f} ({'within' if gap <= BAR_NATS else 'not yet within'} {BAR_NATS:g} nat)"


def markdown(rows: list[ResultRow]) -> str:
    """docs/results.md's table: ours beside the paper's, one line per run."""
    lines = [f"| run | model | paper: test NLL, k = {PAPER_K} | ours: IW-NLL, k = {PAPER_K}, ± standard error | "
             f"ours - paper | epochs trained | wall time |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        paper = f"{r.paper:.2f}" if r.paper is not None else "—"
        lines.append(f"| `{r.name}` | {r.label} | {paper} | {_estimate(r)} | {_verdict(r)} | "
                     f"{r.epoch:,} of {r.epochs:,} | {r.hours:.1f} h |")
    return "\n".join(lines) + "\n"


def plot_progress(path: Path, rows: list[ResultRow]) -> Path:
    """Test negative ELBO per epoch (lines) and the k = 5000 estimates (points) of each run, the paper's
    figures as dashed lines of the same colour, on a log epoch axis with the schedule's stages marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.6), dpi=100, constrained_layout=True)
    end, i = 0, 0
    while end < PAPER_EPOCHS:                                      # stage i of the schedule ends at epoch end
        end += 3 ** i
        i += 1
        ax.axvline(end, color="0.85", lw=0.8, zorder=0)
    for n, r in enumerate(rows):
        colour = f"C{n}"
        epochs, losses = zip(*r.curve) if r.curve else ((), ())
        ax.plot(epochs, losses, "-", color=colour, lw=1, alpha=0.55, label=f"{r.name}: test negative ELBO")
        for images in sorted({h["images"] for h in r.history}):   # open markers: a prefix of the test set
            whole = images == TEST_IMAGES                            # filled: all of it
            points = [h for h in r.history if h["images"] == images]
            ax.errorbar([h["epoch"] for h in points], [h["iwae_nll"] for h in points],
                        yerr=[h["iwae_nll_se"] for h in points], fmt="o", ms=4, color=colour, capsize=2,
                        mfc=colour if whole else "white",
                        label=f"{r.name}: IW-NLL, k = {PAPER_K}, {'all' if whole else 'first'} {images:,} test images")
        if r.paper is not None:
            ax.axhline(r.paper, ls="--", color=colour, lw=1.2, label=f"paper, {r.label}: {r.paper:.2f}")
    ax.set_xscale("log")
    ax.set_xlim(1, PAPER_EPOCHS * 1.2)                              # room for a point at the last epoch
    finite = [v for r in rows for _, v in r.curve] + [r.paper for r in rows if r.paper is not None]
    if finite:
        low = min(finite) - 1.5
        ax.set_ylim(low, min(max(finite), low + 20))
    ax.set_xlabel(f"epoch (log scale; grey lines: the learning-rate stages of the {PAPER_EPOCHS:,}-epoch schedule)")
    ax.set_ylabel("nats per test image")
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("Burda et al. (2015), Table 1, reproduced by the hand-written NumPy VAE", fontsize=10)
    return _save(fig, path)
