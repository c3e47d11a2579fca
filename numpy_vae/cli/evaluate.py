"""``vae evaluate CHECKPOINT``: test negative ELBO and the importance-weighted NLL estimate."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

from .args import UsageError, folder_path, non_negative_int, positive_int, refuse_file_as_data_dir


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="test-set negative ELBO and importance-weighted NLL of a checkpoint",
                       description="Estimate -log p(x) on the MNIST test set with K importance samples "
                                   "(Burda et al. 2015), and the negative ELBO from the same draws, as mean and "
                                   "standard error over the test images. Works on checkpoints of either backend; "
                                   "the noise is drawn in NumPy, so both backends see the same draws.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .npz written by `vae train`, or a run folder (its last.npz)")
    p.add_argument("-k", "--importance-samples", dest="k", metavar="K", type=positive_int, default=5000,
                   help="importance samples per test image (default: 5000, as Burda et al.)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N test images (N >= 2: the standard error needs two)")
    p.add_argument("--backend", default="numpy",
                   help="network evaluated by: numpy (default) or torch; the estimator itself is NumPy either way")
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch backend only)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the importance samples (default: 0)")
    p.add_argument("--test-set", choices=["auto", "grey", "binarized"], default="auto",
                   help="grey: MNIST grey levels as Bernoulli targets; binarized: one fixed Bernoulli draw of the "
                        "test set (numpy_vae.streams.heldout_binarize_stream, the same for every run), what papers "
                        "report; auto (default): binarized when the run trained on binarized data"),
    p.add_argument("--max-rows", type=positive_int, default=4096,
                   help="decode at most this many (image, sample) rows at once: bounds memory (default: 4096)")
    p.add_argument("--data-dir", type=folder_path, default=None,
                   help="folder holding MNIST/raw/ (default: $VAE_DATA_DIR, else the run's data_dir)")
    p.add_argument("--no-save", action="store_true",
                   help="do not write evaluation.json (`vae report` shows it) and a row of evaluations.csv "
                        "(the history of evaluations) beside the checkpoint")
    p.add_argument("--per-image", metavar="FILE", type=folder_path, default=None,
                   help="also write each test image's estimate of log p(x) to FILE as CSV: index (in the test "
                        "set), log_px (nats: -NLL_K of that image), k")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def check_per_image_path(text: str) -> Path:
    """The --per-image FILE, refused in one line before any work if it cannot be written."""
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"--per-image {text}: that is a folder; give a file name, e.g. {path / 'per_image.csv'}")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"--per-image {text}: the folder {folder} does not exist; create it, or pick a file in an "
                         f"existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--per-image {text}: the folder {folder} is not writable; pick a file in a folder you "
                         f"can write")
    return path


TEST_SET_NOTES = {
    "grey": "(pixels are MNIST grey levels used as Bernoulli targets, not binarized MNIST: compare with "
            "papers' binarized-MNIST numbers with care)",
    "binarized": "(binarized MNIST: one fixed Bernoulli draw of every test image, the same for every run and "
                 "seed; comparable with papers' dynamically binarized MNIST results)",
    "gaussian": "(a Gaussian density on grey-level pixels, in nats: not comparable with Bernoulli likelihoods)",
}


def format_summary(s: dict) -> str:
    """The numbers as papers print them: nats per test image, mean ± standard error."""
    rows = [("test negative ELBO", s["neg_elbo"], s["neg_elbo_se"], ""),
            (f"test NLL, IWAE (K = {s['k']})", s["iwae_nll"], s["iwae_nll_se"],
             "   an upper bound on -log p(x), in expectation"),
            ("gap, ELBO - IWAE", s["gap"], s["gap_se"], "")]
    lines = [f"{label:<28}{value:8.2f} ± {se:.2f} nats{note}" for label, value, se, note in rows]
    lines.append(f"({s['images']:,} test images, ± is the standard error over them; {s['seconds']:.1f} s)")
    lines.append(TEST_SET_NOTES[s.get("test_set", "grey")])
    return "\n".join(lines)


def run(args) -> int:
    import numpy as np

    from ..training.checkpoint import CheckpointError
    from ..data import load_mnist
    from ..evaluation.iwae import (bernoulli_log_likelihood, gaussian_log_likelihood, importance_weighted_nll,
                                   importance_weighted_nll_chain, write_per_image)
    from ..streams import binarize, heldout_binarize_stream
    from ..inputs import InputError
    from ..report import HISTORY_FILE, save_evaluation
    from ..training.restore import SPEC_SOURCES, backend_of, read_saved
    if args.limit is not None and args.limit < 2:
        raise UsageError(f"--limit {args.limit}: the standard error over the test images needs at least 2; "
                         f"pass --limit 2 or more")
    if args.backend == "numpy" and args.device != "cpu":
        raise UsageError(f"--device {args.device}: the numpy backend runs on the CPU; use --backend torch for cuda")
    refuse_file_as_data_dir(args.data_dir)
    per_image = None if args.per_image is None else check_per_image_path(args.per_image)
    saved = read_saved(args.checkpoint)
    path, config, meta, spec = saved.path, saved.config, saved.meta, saved.spec
    backend, _ = backend_of(saved, backend=args.backend, device=args.device)
    if not hasattr(backend, "decode_logits"):
        raise UsageError(f"--backend {args.backend}: this backend has no decode_logits(z) method, which the "
                         f"likelihood needs; use --backend numpy")
    data_dir = args.data_dir or os.environ.get("VAE_DATA_DIR") or config.data_dir
    test_x, _ = load_mnist(data_dir, "test")      # its error says how to fetch MNIST
    test_set = args.test_set if args.test_set != "auto" else ("grey" if config.binarize == "none" else "binarized")
    if spec.likelihood == "gaussian":
        if args.test_set == "binarized":
            raise UsageError("--test-set binarized: this model has a Gaussian likelihood, a density on grey levels; "
                             "use --test-set grey")
        test_set, log_likelihood = "gaussian", gaussian_log_likelihood(spec.likelihood_variance)
    else:
        log_likelihood = bernoulli_log_likelihood
    if test_set == "binarized":
        test_x = binarize(test_x, heldout_binarize_stream())     # the whole set, so --limit takes a prefix of it
    if args.limit:
        test_x = test_x[:args.limit]
    print(f"{path}: trained with {meta.get('backend', config.backend)} for {meta.get('epoch', '?')} epochs; "
          f"evaluated by {args.backend}, K = {args.k}; test set: {test_set}")
    print(f"model ({SPEC_SOURCES[saved.spec_source]}) {spec.summary()}")
    unusable = (f"checkpoint {path}: the network gives non-finite values on the test images, so its weights "
                f"are unusable (a diverged run?); retrain, or evaluate another checkpoint (e.g. best.npz)")
    try:
        with np.errstate(all="ignore"):       # overflow in a broken model: reported below in one line
            model = getattr(backend, "model", None)
            if hasattr(model, "noise_dim"):       # several stochastic layers: log w of the whole chain
                log_weights = getattr(backend, "log_weights", None) or model.log_weights     # NumPy arrays
                est = importance_weighted_nll_chain(log_weights, model.noise_dim, backend.dtype, test_x, k=args.k,
                                                    seed=args.seed, max_rows=args.max_rows,
                                                    progress=not args.no_progress)
            else:
                est = importance_weighted_nll(backend.encode, backend.decode_logits, test_x, k=args.k,
                                              seed=args.seed, max_rows=args.max_rows, progress=not args.no_progress,
                                              log_likelihood=log_likelihood)
    except InputError:                        # the decoder refused a non-finite z from the encoder
        raise CheckpointError(unusable) from None
    summary = {**est.summary(), "test_set": test_set}
    if not all(math.isfinite(v) for v in summary.values() if not isinstance(v, str)):
        raise CheckpointError(unusable)
    print(format_summary(summary))
    if per_image is not None:
        try:
            write_per_image(per_image, est)
        except OSError as e:
            raise UsageError(f"--per-image {args.per_image}: could not write it ({e.strerror or e}); nothing was "
                             f"written there") from None
        print(f"wrote {per_image}: log p(x) of each of the {len(est.nll):,} test images (index, log_px, k)")
    if not args.no_save:
        record = {"checkpoint": path.name, "epoch": meta.get("epoch"), "backend": args.backend, "seed": args.seed,
                  "limit": args.limit, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), **summary}
        try:
            out = save_evaluation(path.parent, record)
            print(f"saved {out} (and a row of {HISTORY_FILE} beside it)")
        except (OSError, ValueError) as e:
            print(f"note: could not save the evaluation beside {path} ({e}); the numbers above are the result")
    return 0
