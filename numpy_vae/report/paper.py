"""The paper's table: committed runs of the ``burda`` and ``burda2`` presets beside Burda et al. (2015)'s figures.

Burda, Grosse and Salakhutdinov, "Importance Weighted Autoencoders", Table 1, MNIST: the test negative
log-likelihood, estimated with k = 5000 importance samples, of models trained for 3,280 epochs with one
stochastic layer (784-200-200-50 tanh, the ``burda`` preset) or two (h1 of 100, h2 of 50, the ``burda2``
preset).  ``read_results`` reads every run folder under a results folder (its last.npz: config, epoch,
per-epoch metrics; its evaluations.csv: the k = 5000 estimates saved by `vae evaluate` as the run went on);
``markdown`` prints the table docs/results.md shows, the rows this project reproduces (:data:`REPRODUCED`) always
there, those without a committed run saying so, and ``plot_progress`` draws how each run approached its row.
`vae paper-table` runs all three.  An estimate on a prefix of the test set is labelled as such and never
compared with the paper.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..presets import PRESETS
from ..config import TrainConfig
from ..specs import HVAESpec
from ..training.checkpoint import CheckpointError
from ..training.restore import read_saved
from .evaluations import read_history
from .figures import _pyplot, _save

#: (stochastic layers, objective, samples K trained with) -> (row label, the paper's test NLL in nats at k = 5000)
PAPER_ROWS = {
    (1, "elbo", 1): ("1 stochastic layer, VAE, trained with k = 1", 86.76),
    (1, "iwae", 1): ("1 stochastic layer, IWAE, trained with k = 1 (the VAE)", 86.76),
    (1, "iwae", 5): ("1 stochastic layer, IWAE, trained with k = 5", 85.54),
    (1, "iwae", 50): ("1 stochastic layer, IWAE, trained with k = 50", 84.78),
    (2, "elbo", 1): ("2 stochastic layers, VAE, trained with k = 1", 85.33),
    (2, "iwae", 1): ("2 stochastic layers, IWAE, trained with k = 1 (the VAE)", 85.33),
    (2, "iwae", 5): ("2 stochastic layers, IWAE, trained with k = 5", 83.89),
    (2, "iwae", 50): ("2 stochastic layers, IWAE, trained with k = 50", 82.90),
}
#: the rows this project reproduces (issue 25): in the table whether or not a run of them is committed
REPRODUCED = [(1, "elbo", 1), (1, "iwae", 5), (2, "elbo", 1), (2, "iwae", 5)]
#: the preset of the paper's model with that many stochastic layers
PAPER_PRESETS = {1: "burda", 2: "burda2"}
PAPER_K = 5000
PAPER_EPOCHS = PRESETS["burda"]["epochs"]
TEST_IMAGES = 10_000
#: how close counts as reproduced (the issue's bar): within a nat of the paper's figure
BAR_NATS = 1.0


@dataclass
class ResultRow:
    """One run folder, read for the table; ``name`` None: a reproduced row with no committed run."""
    name: str | None
    label: str
    paper: float | None             # the paper's figure, None where the run is not the paper's setup
    epoch: int                      # epochs trained
    epochs: int                     # epochs its schedule has
    hours: float                    # wall time of the epochs trained, from metrics
    curve: list[tuple[int, float]]  # (epoch, test negative ELBO)
    history: list[dict] = field(default_factory=list)   # evaluations.csv rows at k = PAPER_K, oldest first
    key: tuple | None = None        # its PAPER_ROWS key (layers, objective, K), None where not the paper's setup

    @property
    def latest(self) -> dict | None:
        return self.history[-1] if self.history else None


def stochastic_layers(spec) -> int:
    """How many stochastic layers a model (its spec, as its checkpoint stores it) has: 1, or as many as an
    ``HVAESpec`` stacks (2 for the ``burda2`` architecture, Burda et al.'s two-stochastic-layer model)."""
    return len(spec.encoder) if isinstance(spec, HVAESpec) else 1


def is_paper_setup(config: dict, spec) -> bool:
    """The run trains the paper's model of its number of stochastic layers (the ``burda`` or ``burda2``
    preset's spec, as its checkpoint stores it) on its data (all of the training set) with its schedule
    (any objective); ``config`` is the run's saved configuration."""
    name = PAPER_PRESETS.get(stochastic_layers(spec))
    if name is None:
        return False
    preset = TrainConfig(**PRESETS[name])
    model_fields = {"arch", "hidden", "latent", *preset.spec_options()}
    return (not config.get("train_limit") and spec == preset.spec()
            and all(config.get(k) == v for k, v in PRESETS[name].items() if k not in model_fields))


def read_run(folder: Path) -> ResultRow:
    """A run folder's row; CheckpointError or ValueError name the file that cannot be read."""
    folder = Path(folder)
    saved = read_saved(folder / "last.npz")           # the one loader: the spec the run trained
    meta = saved.meta
    config, metrics = meta.get("config"), meta.get("metrics")
    if not isinstance(config, dict) or not isinstance(metrics, list) or "epoch" not in meta:
        raise CheckpointError(f"{folder / 'last.npz'}: no config, epoch and metrics in it; pass a run folder "
                              f"written by `vae train`")
    samples = config.get("samples", 1) if config.get("objective") == "iwae" else 1
    layers = stochastic_layers(saved.spec)
    key = (layers, config.get("objective", "elbo"), samples)
    what = "1 stochastic layer" if layers == 1 else f"{layers} stochastic layers"
    label, paper = PAPER_ROWS.get(key, (f"{what}, {key[1]}, trained with k = {samples}", None))
    if not is_paper_setup(config, saved.spec):
        paper, key = None, None
        label += " (not the paper's setup)"
    history = [r for r in read_history(folder) if r["k"] == PAPER_K]
    return ResultRow(name=folder.name, label=label, paper=paper, epoch=int(meta["epoch"]),
                     epochs=int(config.get("epochs", 0)), hours=sum(float(r["seconds"]) for r in metrics) / 3600,
                     curve=[(int(r["epoch"]), float(r["test_loss"])) for r in metrics], history=history, key=key)


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
    return sorted((read_run(f) for f in folders), key=_order)


def _order(row: ResultRow) -> tuple:
    """The paper's rows first, by layers then as the paper lists them (VAE, then IWAE by k), then the rest by name."""
    if row.key is None:
        return (1, 0, 0, row.name or "")
    return (0, row.key[0], -row.paper, row.name or "")


def with_missing(rows: list[ResultRow]) -> list[ResultRow]:
    """``rows`` and, for each row this project reproduces (:data:`REPRODUCED`) that no run in ``rows`` holds, a
    row without a run (``name`` None), in the table's order."""
    have = {r.key for r in rows}
    missing = [ResultRow(name=None, label=PAPER_ROWS[key][0], paper=PAPER_ROWS[key][1], epoch=0,
                         epochs=PAPER_EPOCHS, hours=0.0, curve=[], key=key) for key in REPRODUCED if key not in have]
    return sorted(rows + missing, key=_order)


def _estimate(row: ResultRow) -> str:
    latest = row.latest
    if row.name is None:
        return "no committed run"
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
    if latest["images"] != TEST_IMAGES:         # a prefix of the test set is never compared with the paper
        return "— (a prefix of the test set)"
    gap = latest["iwae_nll"] - row.paper
    return f"{gap:+.2f} ({'within' if gap <= BAR_NATS else 'not yet within'} {BAR_NATS:g} nat)"


def markdown(rows: list[ResultRow]) -> str:
    """docs/results.md's table: ours beside the paper's, one line per run, and one per reproduced row without a run."""
    lines = [f"| run | model | paper: test NLL, k = {PAPER_K} | ours: IW-NLL, k = {PAPER_K}, ± standard error | "
             f"ours - paper | epochs trained | wall time |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in with_missing(rows):
        paper = f"{r.paper:.2f}" if r.paper is not None else "—"
        if r.name is None:
            lines.append(f"| — | {r.label} | {paper} | {_estimate(r)} | — | — | — |")
            continue
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
    for n, r in enumerate(with_missing(rows)):
        colour = f"C{n}"
        if r.name is None:                                          # the paper's figure only
            ax.axhline(r.paper, ls=":", color=colour, lw=1.2, label=f"paper, {r.label}: {r.paper:.2f} (no run)")
            continue
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
    finite = [v for r in rows for _, v in r.curve] + [r.paper for r in with_missing(rows) if r.paper is not None]
    if finite:
        low = min(finite) - 1.5
        ax.set_ylim(low, min(max(finite), low + 20))
    ax.set_xlabel(f"epoch (log scale; grey lines: the learning-rate stages of the {PAPER_EPOCHS:,}-epoch schedule)")
    ax.set_ylabel("nats per test image")
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("Burda et al. (2015), Table 1, reproduced by the hand-written NumPy VAE", fontsize=10)
    return _save(fig, path)
