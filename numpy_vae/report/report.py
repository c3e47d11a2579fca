"""``vae report``: every diagnostic figure of a run, and ``report.html`` that shows them with the run's numbers.

Figures written into the run folder (PNG, matplotlib Agg):

    curves.png           per-epoch negative ELBO, reconstruction and KL terms, train and test
    reconstructions.png  test digits above their reconstructions (decoded from the posterior mean)
    samples.png          decodes of z ~ N(0, I), as pixel probabilities
    interpolations.png   straight lines in latent space between test digits of different classes
    latent.png           test posterior means colored by label (2-D latent), else their PCA projection
    manifold.png         2-D latent only: decodes over a grid of Gaussian quantiles
    latent_tsne.png      with tsne=True and scikit-learn importable: t-SNE of the posterior means
    collapse.png         KL of each latent dimension and the variance of its posterior mean: active units
    class_samples.png    per digit class: test digits and decodes of samples from their posteriors

``report.html`` embeds them (base64), so the one file reads offline anywhere.
The model is reached through the backend interface only (``encode`` and
``decode``), so a run of either backend is reported the same way.
"""
from __future__ import annotations

import base64
import html
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np
from tqdm.auto import tqdm

from ..data import load_mnist
from ..nn import functional as F
from ..evaluation.latent_stats import active_units, collapse_message, kl_per_dimension, posterior_stats
from ..streams import report_stream
from ..training.checkpoint import atomic_write
from ..training.restore import load_backend
from . import figures
from .evaluations import EVALUATION_FILE, read_evaluation

TSNE_POINTS = 2000
TSNE_ITERATIONS = 1000


@dataclass
class Figure:
    file: str
    title: str
    caption: str


@dataclass
class Report:
    html: Path
    figures: list[Path] = field(default_factory=list)
    active: int = 0
    latent: int = 0
    warning: str | None = None


def _decode(backend, z: np.ndarray, dtype) -> np.ndarray:
    return np.asarray(backend.decode(np.ascontiguousarray(z, dtype=dtype)))


def interpolation_pairs(labels: np.ndarray, rows: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``rows`` pairs of test indices (i, j) with labels[i] != labels[j], distinct start classes where possible."""
    labels = np.asarray(labels)
    classes = rng.permutation(np.unique(labels))
    pairs = []
    for r in range(rows):
        a = classes[r % len(classes)]
        others = np.flatnonzero(labels != a)
        if len(others) == 0:
            break
        i = int(rng.choice(np.flatnonzero(labels == a)))
        pairs.append((i, int(rng.choice(others))))
    return pairs


def manifold_grid(n: int = 20, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    """n values of z: the quantiles of N(0, 1) at n evenly spaced probabilities in [lo, hi]."""
    dist = NormalDist()
    return np.array([dist.inv_cdf(p) for p in np.linspace(lo, hi, n)])


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, L) points on their two leading principal components (NumPy SVD).

    Returns the (N, 2) projection and the fraction of the variance each component explains.
    """
    centered = np.asarray(points, np.float64) - points.mean(axis=0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    explained = s ** 2 / max((s ** 2).sum(), 1e-300)
    if vt.shape[0] < 2:                                  # a 1-D latent: plot it against zero
        return np.column_stack([centered @ vt[0], np.zeros(len(points))]), np.append(explained, 0.0)
    return centered @ vt[:2].T, explained[:2]


def sklearn_available() -> bool:
    try:
        import sklearn.manifold  # noqa: F401
    except ImportError:
        return False
    return True


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 or abs(v) >= 1e5 else f"{v:.4f}".rstrip("0").rstrip(".")
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return "none" if v is None else str(v)


BINARIZATION_NOTES = {
    "none": "The training images are MNIST's grey levels in [0, 1], used as Bernoulli targets (not binarized)",
    "static": "The training images are one fixed Bernoulli draw of MNIST's grey levels (static binarization, "
              "seeded by the run's seed)",
    "dynamic": "The training images are binarized afresh, a new Bernoulli draw of MNIST's grey levels each time "
               "an image is used (dynamic binarization)",
}


def data_note(config: dict, likelihood: str, likelihood_variance: float = 1.0) -> str:
    """What the report's nats are of, read from the run's configuration (binarization) and its model's
    likelihood: the training data, the test set scored each epoch, what the numbers compare with."""
    binarize = config.get("binarize", "none")
    if likelihood == "gaussian":
        return (f"The likelihood is a Gaussian of fixed variance {likelihood_variance:g} on MNIST's grey levels "
                f"in [0, 1] (not binarized), a density: its nats are not comparable with Bernoulli likelihoods "
                f"such as the binarized-MNIST numbers of the literature. The test set scored each epoch is the "
                f"grey-level MNIST test set.")
    if binarize == "none":
        return (f"{BINARIZATION_NOTES['none']}, and so is the test set scored each epoch, so these likelihoods "
                f"are not directly comparable with the binarized-MNIST numbers of the literature.")
    return (f"{BINARIZATION_NOTES[binarize]}, with a Bernoulli likelihood. The test set scored each epoch is "
            f"one fixed binarization of the MNIST test set, the same for every run and seed, so the numbers "
            f"compare with the literature's binarized-MNIST results. The figures encode the grey-level test "
            f"digits.")


def write_html(path: Path, run_dir: Path, checkpoint: Path, config: dict, rows: list[dict],
               units, kl: np.ndarray, warning: str | None, shown: list[Figure], evaluation: dict | None,
               note: str = "") -> Path:
    """report.html: config, final metrics, the collapse warning if any, every figure embedded;
    ``note`` (:func:`data_note`) says what the nats are of."""
    last = rows[-1] if rows else {}
    best = min(rows, key=lambda r: r["test_loss"]) if rows else {}
    metrics = []
    if rows:
        metrics += [
            ("epochs trained", str(last["epoch"])),
            ("test negative ELBO (final epoch)", f"{last['test_loss']:.2f} nats"),
            ("test reconstruction / KL", f"{last['test_recon']:.2f} / {last['test_kl']:.2f} nats"),
            ("train negative ELBO (final epoch)", f"{last['train_loss']:.2f} nats"),
            ("train reconstruction / KL", f"{last['train_recon']:.2f} / {last['train_kl']:.2f} nats"),
            ("best test negative ELBO", f"{best['test_loss']:.2f} nats (epoch {best['epoch']})"),
            ("training time", f"{sum(r['seconds'] for r in rows):.0f} s"),
        ]
    metrics += [("active units", f"{units.count} of {units.latent} (Var of posterior mean > {units.threshold:g})"),
                ("KL per dimension, test mean", f"total {kl.sum():.2f} nats, largest {kl.max():.2f}, "
                                                 f"smallest {kl.min():.3f}")]
    if evaluation:
        metrics += [
            (f"importance-weighted NLL (K = {evaluation['k']})",
             f"{evaluation['iwae_nll']:.2f} ± {evaluation['iwae_nll_se']:.2f} nats "
             f"({evaluation['images']} test images, {evaluation.get('test_set', 'grey')}; "
             f"checkpoint {evaluation['checkpoint']})"),
            ("negative ELBO, same draws", f"{evaluation['neg_elbo']:.2f} ± {evaluation['neg_elbo_se']:.2f} nats"),
        ]
    warn_html = f'<div class="warning"><strong>Warning.</strong> {html.escape(warning)}</div>' if warning else ""
    figs = []
    for fig in shown:
        data = base64.b64encode((run_dir / fig.file).read_bytes()).decode("ascii")
        figs.append(f'<figure id="{html.escape(fig.file)}"><h3>{html.escape(fig.title)}</h3>'
                    f'<img alt="{html.escape(fig.title)}" src="data:image/png;base64,{data}">'
                    f'<figcaption>{html.escape(fig.caption)} <code>{html.escape(fig.file)}</code></figcaption></figure>')
    name = run_dir.resolve().name
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>VAE report: {html.escape(name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ text-align: left; padding: 0.2em 1em 0.2em 0; border-bottom: 1px solid #ddd; font-size: 0.95em;
          white-space: pre-wrap; }}
th {{ font-weight: 600; }}
.warning {{ background: #fff3cd; border: 1px solid #e0b000; padding: 0.8em 1em; margin: 1em 0; }}
.cols {{ display: flex; gap: 3em; flex-wrap: wrap; }}
figure {{ margin: 2em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 0.9em; max-width: 60em; }}
</style></head><body>
<h1>VAE report: {html.escape(name)}</h1>
<p>Checkpoint <code>{html.escape(checkpoint.name)}</code>, written {html.escape(time.strftime('%Y-%m-%d %H:%M', time.localtime(checkpoint.stat().st_mtime)))};
report made {html.escape(time.strftime('%Y-%m-%d %H:%M'))}. All numbers are nats per image. {html.escape(note)}</p>
{warn_html}
<div class="cols"><div><h2>Final metrics</h2>{_table(metrics)}</div>
<div><h2>Configuration</h2>{_table([(k, _fmt(v)) for k, v in config.items()])}</div></div>
<h2>Figures</h2>
{''.join(figs)}
</body></html>
"""
    atomic_write(path, lambda f: f.write(doc.encode("utf-8")))
    return path


@dataclass
class Inputs:
    """What every figure function reads: the run folder and the model, the test set, its posteriors."""
    run_dir: Path
    backend: object
    rows: list[dict]
    test_x: np.ndarray
    test_y: np.ndarray
    mu: np.ndarray
    logvar: np.ndarray
    units: object
    kl: np.ndarray
    dtype: np.dtype
    seed: int
    classes: list[int]

    @property
    def latent(self) -> int:
        return self.mu.shape[1]

    def decode(self, z: np.ndarray) -> np.ndarray:
        return _decode(self.backend, z, self.dtype)


def _curves(r: Inputs) -> Figure | None:
    if not r.rows:
        return None
    figures.plot_curves(r.run_dir / "curves.png", r.rows)
    return Figure("curves.png", "Training curves",
                  "Negative ELBO per image and its two terms, reconstruction (-E_q log p(x|z)) and "
                  "KL(q(z|x) || p(z)), after each epoch: train (mean over the epoch's steps) and test.")


def _reconstructions(r: Inputs) -> Figure:
    n = 16
    originals = r.test_x[:2 * n]
    recon = r.decode(r.mu[:2 * n])
    grid = np.concatenate([originals[:n], recon[:n], originals[n:], recon[n:]])
    figures.save_grid(r.run_dir / "reconstructions.png", grid, n, "test digits and their reconstructions",
                      row_labels=["test", "recon.", "test", "recon."])
    return Figure("reconstructions.png", "Reconstructions",
                  "The first 32 test digits, each above its reconstruction: the decoder's pixel "
                  "probabilities at the posterior mean z = mu(x).")


def _samples(r: Inputs) -> Figure:
    z = report_stream(r.seed, "samples").standard_normal((8 * 16, r.latent))
    figures.save_grid(r.run_dir / "samples.png", r.decode(z), 16, "digits decoded from z ~ N(0, I) (pixel probabilities)")
    return Figure("samples.png", "Samples from the prior",
                  "128 draws z ~ N(0, I), decoded; shown are the Bernoulli means (probabilities), "
                  "not thresholded or sampled pixels.")


def _interpolations(r: Inputs) -> Figure:
    pairs = interpolation_pairs(r.test_y, 8, report_stream(r.seed, "interpolations"))
    t = np.linspace(0, 1, 10)
    a, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    zs = (1 - t)[None, :, None] * r.mu[a][:, None] + t[None, :, None] * r.mu[b][:, None]
    path = r.decode(zs.reshape(-1, r.latent)).reshape(len(pairs), len(t), -1)
    figures.plot_interpolations(r.run_dir / "interpolations.png", r.test_x[a], path, r.test_x[b],
                                [f"{r.test_y[i]} → {r.test_y[j]}" for i, j in pairs])
    return Figure("interpolations.png", "Interpolations",
                  "Each row: a test digit, ten decodes at evenly spaced points of the straight line "
                  "between its posterior mean and that of a test digit of another class, that digit.")


def _latent(r: Inputs) -> Figure:
    mu = r.mu
    if r.latent == 2:
        figures.plot_latent_scatter(r.run_dir / "latent.png", mu, r.test_y,
                                    f"posterior means of the {len(mu):,} test digits", "mu_1", "mu_2")
        caption = "The posterior mean mu(x) of every test digit, colored by its label."
    else:
        proj, explained = pca_2d(mu)
        figures.plot_latent_scatter(r.run_dir / "latent.png", proj, r.test_y,
                                    f"PCA of the {r.latent}-D posterior means of the {len(mu):,} test digits",
                                    f"PC 1 ({100 * explained[0]:.0f}% of variance)",
                                    f"PC 2 ({100 * explained[1]:.0f}% of variance)", equal=False)
        caption = (f"The posterior means mu(x) of the test digits projected on their two principal components (PCA, "
                   f"NumPy SVD; {100 * explained.sum():.0f}% of their variance), colored by label.")
    return Figure("latent.png", "Latent space", caption)


def _manifold(r: Inputs) -> Figure:
    grid = manifold_grid(20)
    z1, z2 = np.meshgrid(grid, grid[::-1])
    z = np.column_stack([z1.ravel(), z2.ravel()])
    figures.plot_manifold(r.run_dir / "manifold.png", r.decode(z), grid, grid[::-1])
    return Figure("manifold.png", "Learned manifold",
                  "Decodes of z on a 20 x 20 grid whose coordinates are the quantiles of N(0, 1) at "
                  "probabilities 0.05 ... 0.95, as in Kingma and Welling (2014), figure 4.")


def _tsne(r: Inputs) -> Figure:
    from sklearn.manifold import TSNE
    idx = report_stream(r.seed, "tsne").choice(len(r.mu), size=min(TSNE_POINTS, len(r.mu)), replace=False)
    emb = TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(idx) - 1) / 3), max_iter=TSNE_ITERATIONS,
               random_state=r.seed).fit_transform(np.asarray(r.mu[idx], np.float64))
    figures.plot_latent_scatter(r.run_dir / "latent_tsne.png", emb, r.test_y[idx],
                                f"t-SNE of the posterior means of {len(idx):,} test digits",
                                "t-SNE 1", "t-SNE 2", equal=False)
    return Figure("latent_tsne.png", "Latent space, t-SNE",
                  "A t-SNE embedding (scikit-learn) of the posterior means of a random subset of "
                  "the test digits; distances between clusters are not meaningful in t-SNE.")


def _collapse(r: Inputs) -> Figure:
    units = r.units
    figures.plot_collapse(r.run_dir / "collapse.png", r.kl, units.variance, units.mask, units.threshold)
    return Figure("collapse.png", "Posterior collapse: KL per dimension and active units",
                  f"Top: KL(q(z_u|x) || N(0, 1)) of each latent dimension u, averaged over the test "
                  f"set. Bottom: the variance over the test set of each posterior mean mu_u(x); a "
                  f"unit is active above {units.threshold:g} (Burda et al. 2015). "
                  f"{units.count} of {r.latent} units are active.")


def _class_samples(r: Inputs) -> Figure | None:
    rng = report_stream(r.seed, "class_samples")
    present = [c for c in r.classes if (r.test_y == c).any()]
    per_class = min([3] + [int((r.test_y == c).sum()) for c in present])
    panels = []
    for c in present:
        idx = np.sort(rng.choice(np.flatnonzero(r.test_y == c), size=per_class, replace=False))
        eps = rng.standard_normal((len(idx), 6, r.latent))
        z = F.reparameterize(r.mu[idx][:, None], r.logvar[idx][:, None], eps)
        samples = r.decode(z.reshape(-1, r.latent)).reshape(len(idx), 6, -1)
        panels.append((f"digit {c}", r.test_x[idx], samples))
    if not panels:
        return None
    figures.plot_class_samples(r.run_dir / "class_samples.png", panels)
    return Figure("class_samples.png", "Per-class generation",
                  f"For each digit class, {per_class} test digits of that class (left of the red line), "
                  "each followed by six decodes of z = mu + sigma * eps, eps ~ N(0, I), drawn "
                  "from its posterior q(z|x).")


#: The figures, in the report's order: name -> the function that draws it (None: nothing to draw).
FIGURES = {"curves": _curves, "reconstructions": _reconstructions, "samples": _samples,
           "interpolations": _interpolations, "latent": _latent, "manifold": _manifold, "tsne": _tsne,
           "collapse": _collapse, "class_samples": _class_samples}
FIGURE_STEPS = tuple(FIGURES)


def figure_steps(latent: int, tsne: bool, only: set[str] | None, log=print) -> list[str]:
    """The figures a report of a ``latent``-D model draws: the manifold only in 2-D, t-SNE when asked for
    (and scikit-learn is there) above 2-D; ``only`` keeps those named."""
    if only is not None and set(only) - set(FIGURES):
        raise ValueError(f"unknown figure(s) {sorted(set(only) - set(FIGURES))}; choose from {list(FIGURES)}")
    steps = []
    for name in FIGURES:
        if name == "manifold" and latent != 2:
            continue
        if name == "tsne":
            if not tsne or latent <= 2:
                continue
            if not sklearn_available():
                log("t-SNE skipped: scikit-learn is not importable (pip install scikit-learn)")
                continue
        if only is None or name in only:
            steps.append(name)
    return steps


def write_report(run_dir, checkpoint: str = "last.npz", data_dir=None, tsne: bool = False,
                 classes=None, seed: int | None = None, progress: bool = True, log=print,
                 only: set[str] | None = None) -> Report:
    """Write every figure and report.html into ``run_dir``; returns what was written.

    ``only`` restricts the figures drawn to those named (see ``FIGURES``); the
    statistics, the warning and the tables are always computed.

    The weights of ``run_dir/checkpoint`` are loaded into a NumPy backend (a checkpoint of
    either backend); the run's configuration and per-epoch metrics come from its meta.
    """
    run_dir = Path(run_dir)
    ckpt = run_dir / checkpoint
    backend, train_config, meta = load_backend(ckpt)
    config = meta.get("config") or train_config.to_json()
    seed = int(config.get("seed", 0)) if seed is None else seed
    data_dir = data_dir or os.environ.get("VAE_DATA_DIR") or config.get("data_dir", "data")
    test_x, test_y = load_mnist(data_dir, "test")
    mu, logvar = posterior_stats(backend.encode, test_x)
    units = active_units(mu)
    inputs = Inputs(run_dir=run_dir, backend=backend, rows=meta.get("metrics") or [], test_x=test_x, test_y=test_y,
                    mu=mu, logvar=logvar, units=units, kl=kl_per_dimension(mu, logvar),
                    dtype=np.dtype(config.get("dtype", "float32")), seed=seed,
                    classes=list(range(10)) if classes is None else sorted(set(int(c) for c in classes)))
    latent, kl, rows = inputs.latent, inputs.kl, inputs.rows
    warning = collapse_message(units)

    steps = figure_steps(latent, tsne, only, log)
    drawn = [FIGURES[step](inputs) for step in tqdm(steps, desc="report", unit="figure", disable=not progress,
                                                    dynamic_ncols=True)]
    shown: list[Figure] = [fig for fig in drawn if fig is not None]

    evaluation = None
    eval_path = run_dir / EVALUATION_FILE
    if eval_path.is_file():
        evaluation, why = read_evaluation(eval_path)
        if why is not None:
            log(f"note: {why}; left out of the report (`vae evaluate` writes a new one)")
        elif evaluation.get("checkpoint") not in (checkpoint, str(ckpt.name)):
            log(f"note: {eval_path} is for {evaluation.get('checkpoint')}, not {checkpoint}; shown as is")
    note = data_note(config, backend.spec.likelihood, backend.spec.likelihood_variance)
    report_path = write_html(run_dir / "report.html", run_dir, ckpt, config, rows, units, kl, warning, shown,
                             evaluation, note)
    log(f"active units: {units.count} of {latent}; report: {report_path}")
    if warning:
        log(f"warning: {warning}")
    return Report(html=report_path, figures=[run_dir / f.file for f in shown], active=units.count, latent=latent,
                  warning=warning)
