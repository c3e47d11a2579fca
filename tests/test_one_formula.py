"""One formula, one place: the densities, likelihoods, the KL and the reparameterization live in
numpy_vae/nn/functional.py (and torch_vae/functional.py for the port); everything else calls them.

The source is read without its comments and docstrings (they may explain a formula, or why not another),
and each formula's signature may appear only where it is allowed.  Then the bug that made this rule:
the evaluation formed the KL as exp(logvar) - 1 - logvar, which cancels near logvar = 0.
"""
from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import numpy as np
import pytest
import torch

import torch_vae.functional as TF
from numpy_vae.evaluation.iwae import importance_weighted_nll
from numpy_vae.evaluation.latent_stats import kl_per_dimension
from numpy_vae.nn import functional as F
from numpy_vae.nn.gradcheck import exact_gaussian_kl

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONAL = {"numpy_vae/nn/functional.py", "torch_vae/functional.py"}

#: formula -> (its signature in code, the files besides FUNCTIONAL allowed to hold it, and why)
FORMULAS = {
    "the KL's e^logvar - 1, naive": (r"(np|torch|math)\.exp\(\s*logvar\s*\)\s*-\s*1|logvar\.exp\(\)\s*-\s*1", set()),
    "the KL's expm1": (r"expm1\(", {"numpy_vae/nn/losses.py"}),            # GaussianKL keeps it for backward
    "the reparameterization's sigma": (r"exp\(\s*0\.5\s*\*\s*logvar", set()),
    "the log prior ratio": (r"eps\s*\*\s*eps", set()),
    "the Gaussian's log 2 pi": (r"log\(\s*2\s*\*\s*(math\.|np\.)?pi", set()),
    "the Bernoulli's softplus": (r"log1p\(", set()),
    "torch's Bernoulli nll": (r"binary_cross_entropy_with_logits", set()),
}


def _code(path: Path) -> str:
    """The file's text with comments and docstrings (string statements) blanked out, the rest as written."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    spans, previous = [], tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        statement_start = previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and statement_start):
            spans.append((starts[tok.start[0] - 1] + tok.start[1], starts[tok.end[0] - 1] + tok.end[1]))
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            previous = tok.type
    for a, b in reversed(spans):
        text = text[:a] + " " + text[b:]
    return text


SOURCES = {str(p.relative_to(ROOT)): _code(p) for top in ("numpy_vae", "torch_vae") for p in (ROOT / top).rglob("*.py")}


@pytest.mark.parametrize("formula", sorted(FORMULAS))
def test_no_module_rederives_a_formula_of_the_functional_modules(formula):
    pattern, allowed = FORMULAS[formula]
    found = sorted(name for name, code in SOURCES.items()
                   if re.search(pattern, code) and name not in FUNCTIONAL | allowed)
    assert not found, f"{formula} is written outside numpy_vae/nn/functional.py: {found}; call the function there"


def test_the_reader_strips_only_comments_and_docstrings():
    code = SOURCES["numpy_vae/nn/functional.py"]
    assert re.search(FORMULAS["the KL's expm1"][0], code) and "keeps its relative accuracy" not in code


# ------------------------------------------------------------------ the KL bug
def test_the_evaluations_kl_is_accurate_near_the_prior():
    """Near logvar = 0 the naive exp(logvar) - 1 - logvar is off by the rounding of exp(logvar) ~ 1, about
    1e-16, when the answer is logvar^2 / 4 (2.5e-17 for 1e-8); the expm1 form's error is the rounding of
    terms of size |logvar|, a few eps |logvar|.  Both evaluation paths read functional.gaussian_kl."""
    mu = np.zeros((3, 4))
    logvar = np.array([[1e-8, -1e-8, 3e-6, 1e-12]] * 3)
    bound = 4 * np.finfo(np.float64).eps * np.abs(logvar[0])                     # the expm1 form's error
    exact, _, _ = exact_gaussian_kl(mu, logvar, np.ones(3))
    per_dimension = np.array([exact_gaussian_kl(mu[:, [u]], logvar[:, [u]], np.ones(3))[0][0] for u in range(4)])
    assert np.all(np.abs(kl_per_dimension(mu, logvar) - per_dimension) <= bound)
    naive = (0.5 * (mu * mu + np.exp(logvar) - 1 - logvar)).mean(axis=0)            # what latent_stats did
    assert np.any(np.abs(naive - per_dimension) > 1000 * bound)                     # so this test fails on it

    # the IWAE estimator's negative ELBO = mean nll + the closed-form KL; with a likelihood of 1, only the KL
    est = importance_weighted_nll(lambda x: (mu[:len(x)], logvar[:len(x)]), lambda z: np.zeros((len(z), 1)),
                                  np.zeros((3, 1)), k=2, log_likelihood=lambda out, x: np.zeros(out.shape[:-1]))
    assert np.all(np.abs(est.neg_elbo - exact) <= bound.sum())
    naive_rows = 0.5 * (mu * mu + np.exp(logvar) - 1 - logvar).sum(axis=1)          # what iwae.py did
    assert np.all(np.abs(naive_rows - exact) > 1000 * bound.sum())


# -------------------------------------------------- the two modules agree, term for term
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_and_torch_functional_forms_agree(dtype):
    rng = np.random.default_rng(4)
    mu, logvar, eps = (rng.normal(size=(5, 3, 7)).astype(dtype) for _ in range(3))
    x = (rng.random((5, 1, 7)) > 0.5).astype(dtype)
    t = {k: torch.from_numpy(v) for k, v in dict(mu=mu, logvar=logvar, eps=eps, x=x).items()}
    z = F.reparameterize(mu, logvar, eps)
    zt = TF.reparameterize(t["mu"], t["logvar"], t["eps"])
    tol = dict(rtol=1e-12 if dtype == np.float64 else 1e-5, atol=1e-12 if dtype == np.float64 else 1e-5)
    pairs = [
        (z, zt),
        (F.gaussian_kl(mu, logvar), TF.gaussian_kl(t["mu"], t["logvar"])),
        (-F.bernoulli_log_likelihood(mu, x), TF.bernoulli_nll(t["mu"], t["x"].expand_as(t["mu"]))),
        (F.gaussian_nll(mu, x, 0.3), TF.gaussian_nll(t["mu"], t["x"], 0.3)),
        (F.standard_normal_log_density(z), TF.standard_normal_log_density(zt)),
        (F.diag_gaussian_log_density(z, mu, logvar), TF.diag_gaussian_log_density(zt, t["mu"], t["logvar"])),
        (F.log_prior_ratio(z, eps, logvar), TF.log_prior_ratio(zt, t["eps"], t["logvar"])),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.numpy(), **tol)
    # the log prior ratio is the difference of the two log densities (the log 2 pi terms cancel)
    np.testing.assert_allclose(F.log_prior_ratio(z, eps, logvar),
                               F.standard_normal_log_density(z) - F.diag_gaussian_log_density(z, mu, logvar), **tol)


def test_the_log_densities_are_the_textbook_ones():
    from scipy.stats import multivariate_normal
    rng = np.random.default_rng(1)
    z, mu, logvar = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    for i in range(3):
        assert F.standard_normal_log_density(z[i]) == pytest.approx(multivariate_normal(np.zeros(4)).logpdf(z[i]),
                                                                    rel=1e-13)
        assert F.diag_gaussian_log_density(z[i], mu[i], logvar[i]) == pytest.approx(
            multivariate_normal(mu[i], np.diag(np.exp(logvar[i]))).logpdf(z[i]), rel=1e-12)
