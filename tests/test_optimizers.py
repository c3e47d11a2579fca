"""The NumPy optimizers: torch.optim's semantics, in the reference (numpy_vae.nn) and the tuned Adam
(numpy_vae.kernels.adam.FastAdam; its equality to the reference, step for step, is in tests/test_kernels.py).
Here: both Adams on hand-checked cases, FastAdam's blocks, threads and subnormal flush, SGD."""
import math

import numpy as np
import pytest

from numpy_vae.kernels.adam import FastAdam
from numpy_vae.nn.optimizers import SGD, Adam

BOTH = pytest.mark.parametrize("Adam", [Adam, FastAdam], ids=["reference", "fast"])


@BOTH
def test_adam_first_step_moves_each_parameter_by_lr_against_the_gradient_sign(Adam):
    """With bias correction, step 1 is -lr * g / (|g| + eps): about lr in size whatever |g| is."""
    p = np.zeros(4)
    g = np.array([1e-3, -2.0, 5e2, -1e-1])
    Adam(p, lr=0.01).step(g)
    np.testing.assert_allclose(p, -0.01 * np.sign(g), rtol=1e-4)


@BOTH
def test_adam_eps_is_added_after_the_square_root(Adam):
    """A zero-gradient coordinate after one nonzero step: denominator sqrt(v_hat) + eps, not sqrt(v_hat + eps)."""
    p = np.zeros(1)
    opt = Adam(p, lr=1.0, betas=(0.9, 0.999), eps=1e-3)
    opt.step(np.array([1e-3]))
    m_hat, v_hat = 1e-3, 1e-6            # bias-corrected moments after step 1
    assert p[0] == pytest.approx(-m_hat / (math.sqrt(v_hat) + 1e-3), rel=1e-12)


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_adam_state_dict_is_a_snapshot_that_later_steps_leave_alone(threads):
    """A saved state_dict keeps the moments of its step, not live views that the next step updates in place."""
    rng = np.random.default_rng(1)
    p = rng.normal(size=50).astype(np.float32)
    opt = Adam(p, lr=0.01) if threads is None else FastAdam(p, lr=0.01, block=8, threads=threads)
    for _ in range(3):
        opt.step(rng.normal(size=50).astype(np.float32))
    saved = opt.state_dict()
    frozen = {k: np.array(v, copy=True) for k, v in saved.items()}
    for _ in range(2):
        opt.step(rng.normal(size=50).astype(np.float32))
    assert not np.array_equal(opt.exp_avg, frozen["exp_avg"])            # the live moments did move
    for key in frozen:
        np.testing.assert_array_equal(saved[key], frozen[key], err_msg=key)
    assert not np.shares_memory(saved["exp_avg"], opt.exp_avg)
    assert not np.shares_memory(saved["exp_avg_sq"], opt.exp_avg_sq)
    saved["exp_avg"][:] = 7.0                                             # and writing to it leaves the optimizer alone
    assert not (opt.exp_avg == 7.0).any()


def test_sgd_state_dict_is_a_snapshot_that_later_steps_leave_alone():
    opt = SGD(np.zeros(4), lr=0.1, momentum=0.9)
    opt.step(np.array([1.0, 2.0, 3.0, 4.0]))
    saved = opt.state_dict()
    opt.step(np.array([1.0, 1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(saved["momentum_buffer"], [1.0, 2.0, 3.0, 4.0])
    assert int(saved["step"]) == 1
    assert not np.shares_memory(saved["momentum_buffer"], opt.buf)


def test_adam_blocks_and_threads():
    opt = FastAdam(np.zeros(10), block=3, threads=2)
    assert [(s.start, s.stop) for s in opt._slices] == [(0, 3), (3, 6), (6, 9), (9, 10)]   # the last one short
    assert opt.threads == 2 and FastAdam(np.zeros(10), block=8, threads=4).threads == 2      # no more threads than blocks
    with pytest.raises(ValueError, match="threads"):
        FastAdam(np.zeros(10), threads=0)
    with pytest.raises(ValueError, match="threads"):
        FastAdam(np.zeros(10), threads=1.5)
    with pytest.raises(ValueError, match="block"):
        FastAdam(np.zeros(10), block=0)


def test_a_thread_held_back_takes_fewer_blocks_instead_of_holding_up_the_step(monkeypatch):
    """The blocks are handed out one at a time: a helper that starts late finds most of them taken."""
    import threading
    import time
    taken = {}
    real = FastAdam._update

    def slow_helper(*args):
        name = threading.current_thread().name
        taken[name] = taken.get(name, 0) + 1
        if name.startswith("adam"):
            time.sleep(0.05)                 # the helper thread is slow (its core is busy)
        return real(*args)
    monkeypatch.setattr(FastAdam, "_update", staticmethod(slow_helper))
    opt = FastAdam(np.zeros(64), block=2, threads=2)
    opt.step(np.ones(64))
    assert sum(taken.values()) == 32
    main = taken[threading.current_thread().name]
    assert main >= 28, taken
    np.testing.assert_allclose(opt.params, -1e-3, rtol=1e-6)


@BOTH
def test_adam_refuses_bad_hyperparameters(Adam):
    with pytest.raises(ValueError, match="betas"):
        Adam(np.zeros(2), betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="lr"):
        Adam(np.zeros(2), lr=-1)


@BOTH
@pytest.mark.parametrize("eps", [0.0, -1e-8, float("nan"), float("inf")])
def test_adam_refuses_eps_that_is_not_a_positive_number(eps, Adam):
    """eps = 0: a coordinate whose gradient has always been 0 has m = v = 0, and its update is 0 / 0."""
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0, got eps="):
        Adam(np.zeros(2), eps=eps)


def test_fast_adam_with_a_tiny_eps_still_follows_the_reference():
    rng = np.random.default_rng(3)
    p = rng.normal(size=50)
    opt, ref = FastAdam(p, lr=1e-2, eps=1e-30), Adam(p.copy(), lr=1e-2, eps=1e-30)
    for t in range(1, 21):
        g = rng.normal(size=50)
        g[:5] = 0
        opt.step(g)
        ref.step(g)
    np.testing.assert_allclose(p, ref.params, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_adam_follows_the_reference_when_lr_changes_between_steps(dtype):
    """Schedules set lr between steps (set_lr); lr = 0 moves the moments but not the parameters, and an lr
    large enough to take the eleventh pass (the scale at its upper bound) is torch's update too."""
    rng = np.random.default_rng(5)
    p = rng.normal(size=300).astype(dtype)
    opt = FastAdam(p, lr=1e-3, block=64)
    ref = Adam(p.astype(np.float64), lr=1e-3)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    g_scale = 0.0
    for t, lr in enumerate([1e-3, 3e-3, 0.0, 0.0, 0.5, 1e-5, 1e-3, 1e-1, 1e-3], start=1):
        g = (rng.normal(size=300) * 10.0 ** rng.integers(-4, 2, size=300)).astype(dtype)
        g_scale = max(g_scale, float(np.abs(g).max()))
        opt.lr = ref.lr = lr
        before = p.copy()
        opt.step(g)
        ref.step(g.astype(np.float64))
        if lr == 0:
            np.testing.assert_array_equal(p, before)
        np.testing.assert_allclose(p, ref.params, rtol=rtol, atol=rtol * 1e-3)
    # (a moment that has crossed zero is held to the rounding of the largest quantity involved, as above)
    np.testing.assert_allclose(opt.exp_avg, ref.exp_avg, rtol=rtol, atol=rtol * 1e-3 * g_scale)
    np.testing.assert_allclose(opt.exp_avg_sq, ref.exp_avg_sq, rtol=rtol, atol=rtol * 1e-3 * g_scale ** 2)


@BOTH
def test_adam_float32_gradient_near_the_top_of_float32_steps_as_torch_does(Adam):
    """|g| = 5e19: g^2 overflows float32, (1 - b2) g g (torch's order) does not; the moments stay finite."""
    g = np.array([5e19, -5e19, 1.0], np.float32)
    opt = Adam(np.zeros(3, np.float32), lr=1e-3)
    with np.errstate(over="raise"):
        opt.step(g)
    assert np.isfinite(opt.exp_avg_sq).all() and np.isfinite(opt.params).all()
    np.testing.assert_allclose(opt.exp_avg_sq[:2], 1e-3 * 2.5e39, rtol=1e-5)
    np.testing.assert_allclose(opt.params, [-1e-3, 1e-3, -1e-3], rtol=1e-4)


def test_sgd_with_momentum_and_weight_decay_follows_torch_semantics():
    p = np.array([1.0, -2.0])
    opt = SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)
    g = np.array([0.5, 0.5])
    opt.step(g)                                # b = g + wd p
    b1 = g + 0.01 * np.array([1.0, -2.0])
    expected1 = np.array([1.0, -2.0]) - 0.1 * b1
    np.testing.assert_allclose(p, expected1)
    opt.step(g)                                # b = 0.9 b + (g + wd p)
    b2 = 0.9 * b1 + g + 0.01 * expected1
    np.testing.assert_allclose(p, expected1 - 0.1 * b2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_flushes_subnormal_moments_and_nothing_else(dtype):
    """The stored moments below finfo.tiny (what the CPU computes with) are set to 0, the rest kept."""
    tiny = np.finfo(dtype).tiny
    m = np.array([tiny / 4, -tiny / 3, tiny, 1.0, -tiny * 2, 0.0], dtype)
    v = np.array([tiny / 8, 1.0, 1.0, 1.0, 1.0, 1.0], dtype)
    FastAdam._flush_subnormals(m, v, np.empty(6, dtype))
    np.testing.assert_array_equal(m, [0, 0, tiny, 1.0, -tiny * 2, 0.0])
    np.testing.assert_array_equal(v, [0, 1, 1, 1, 1, 1])


def test_every_block_is_flushed_once_every_flush_every_steps(monkeypatch):
    """One block in FLUSH_EVERY each step, in turn, so no step pays for the whole buffer."""
    seen = []
    monkeypatch.setattr(FastAdam, "_flush_subnormals", staticmethod(lambda m, v, s: seen.append(m.size)))
    opt = FastAdam(np.zeros(40), block=1, threads=1)
    flushed_at = {}
    for t in range(1, 2 * FastAdam.FLUSH_EVERY + 1):
        seen.clear()
        opt.step(np.ones(40))
        flushed_at[t] = len(seen)
    assert all(n in (2, 3) for n in flushed_at.values())         # 40 blocks over 16 steps: 2 or 3 a step
    assert sum(flushed_at.values()) == 2 * 40


def test_adam_with_a_dead_coordinate_never_holds_subnormal_moments_for_long():
    """Unflushed, the stored moments of a zero-gradient coordinate sink through the subnormals and then stay
    at a few ulps of 2^-149 for good (b1 * m rounds back to m); flushed, they are 0 within FLUSH_EVERY
    steps of going subnormal, and the live coordinate is untouched."""
    tiny = np.finfo(np.float32).tiny

    def run(flush_every):
        opt = FastAdam(np.zeros(2, np.float32), lr=1e-3)
        opt.FLUSH_EVERY = flush_every
        opt.step(np.array([1e-3, 1e-3], np.float32))
        steps_subnormal = 0
        for _ in range(1500):                  # coordinate 0 keeps its gradient, coordinate 1 sees only zeros
            opt.step(np.array([1e-3, 0], np.float32))
            m = opt._m[1]                      # the stored moment (exp_avg is at torch's scale)
            steps_subnormal += bool(m != 0 and abs(m) < tiny)
            assert opt._m[0] > tiny
        return opt, steps_subnormal

    opt, steps = run(FastAdam.FLUSH_EVERY)
    assert opt._m[1] == 0 and 0 < steps <= FastAdam.FLUSH_EVERY
    unflushed, steps = run(10**12)                 # what torch.optim.FastAdam does: keep them
    m = unflushed._m[1]
    assert 0 < abs(m) < tiny and steps > 500                                       # stuck


def test_thread_tuner_keeps_the_faster_setting_and_tries_again_later():
    from numpy_vae.kernels.threads import ThreadTuner
    tuner = ThreadTuner([1, 2], period=10, trial=2, first=3)
    assert [tuner.threads(t) for t in (1, 2)] == [2, 2]              # before the first trial: the most threads
    cost, used = {1: 1.0, 2: 3.0}, []                                 # another process holds a core: 1 thread wins
    for t in range(3, 7):
        used.append(tuner.threads(t))
        tuner.record(t, used[-1], cost[used[-1]])
    assert used == [1, 2, 1, 2] and tuner.choice == 1
    assert {tuner.threads(t) for t in range(7, 17)} == {1} and tuner.history == [(6, 1)]
    cost = {1: 2.0, 2: 1.0}                                           # the core is free again
    for t in range(17, 21):
        threads = tuner.threads(t)
        tuner.record(t, threads, cost[threads])
    assert tuner.choice == 2 and tuner.history == [(6, 1), (20, 2)]


def test_adam_choosing_its_threads_is_bitwise_the_fixed_one():
    rng = np.random.default_rng(4)
    p1 = rng.normal(size=5000).astype(np.float32)
    p2 = p1.copy()
    auto = FastAdam(p1, lr=1e-2, block=512)
    fixed = FastAdam(p2, lr=1e-2, block=512, threads=1)
    assert auto.tuner is not None or auto.threads == 1
    for _ in range(40):
        g = rng.normal(size=5000).astype(np.float32)
        auto.step(g)
        fixed.step(g)
    np.testing.assert_array_equal(p1, p2)
    if auto.tuner is not None:
        assert auto.tuner.history and auto.tuner.history[0][1] in (1, 2)
