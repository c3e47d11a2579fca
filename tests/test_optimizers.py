"""The NumPy optimizers: the in-place Adam equals the textbook one, step for step."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from numpy_vae.nn.optimizers import SGD, Adam, adam_reference


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), steps=st.integers(1, 30),
       lr=st.floats(1e-5, 1e-1), wd=st.sampled_from([0.0, 1e-2]),
       b1=st.floats(0.0, 0.99), b2=st.floats(0.5, 0.9999), block=st.integers(1, 64))
def test_in_place_adam_equals_the_reference_formula(seed, n, steps, lr, wd, b1, b2, block):
    """Blocked in-place update == textbook update, whatever the block size (partial last block too)."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=n)
    opt = Adam(p, lr=lr, betas=(b1, b2), weight_decay=wd, block=block, threads=1)
    ref_p, m, v = p.copy(), np.zeros(n), np.zeros(n)
    g_scale = 0.0
    for t in range(1, steps + 1):
        g = rng.normal(size=n) * 10.0 ** rng.integers(-6, 3)
        g_scale = max(g_scale, np.abs(g).max())
        opt.step(g)
        ref_p, m, v = adam_reference(ref_p, g, m, v, t, lr, (b1, b2), 1e-8, wd)
    # The two round differently (torch's lerp form against b1 m + (1 - b1) g), by a few ulps of
    # the largest quantity involved; that looks large relative to a value that has crossed zero.
    np.testing.assert_allclose(p, ref_p, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(opt.exp_avg, m, rtol=1e-12, atol=1e-14 * g_scale)
    np.testing.assert_allclose(opt.exp_avg_sq, v, rtol=1e-12, atol=1e-14 * g_scale ** 2)


def test_adam_first_step_moves_each_parameter_by_lr_against_the_gradient_sign():
    """With bias correction, step 1 is -lr * g / (|g| + eps): about lr in size whatever |g| is."""
    p = np.zeros(4)
    g = np.array([1e-3, -2.0, 5e2, -1e-1])
    Adam(p, lr=0.01).step(g)
    np.testing.assert_allclose(p, -0.01 * np.sign(g), rtol=1e-4)


def test_adam_eps_is_added_after_the_square_root():
    """A zero-gradient coordinate after one nonzero step: denominator sqrt(v_hat) + eps, not sqrt(v_hat + eps)."""
    p = np.zeros(1)
    opt = Adam(p, lr=1.0, betas=(0.9, 0.999), eps=1e-3)
    opt.step(np.array([1e-3]))
    m_hat, v_hat = 1e-3, 1e-6            # bias-corrected moments after step 1
    assert p[0] == pytest.approx(-m_hat / (math.sqrt(v_hat) + 1e-3), rel=1e-12)


def test_adam_state_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(6, 10))
    p1 = rng.normal(size=10)
    p2 = p1.copy()
    a = Adam(p1, lr=0.05)
    for g in grads:
        a.step(g)
    b = Adam(p2, lr=0.05)
    for g in grads[:3]:
        b.step(g)
    state = {k: np.array(v, copy=True) for k, v in b.state_dict().items()}
    c = Adam(p2, lr=0.05)
    c.load_state_dict(state)
    for g in grads[3:]:
        c.step(g)
    np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize("threads", [1, 2])
def test_adam_state_dict_is_a_snapshot_that_later_steps_leave_alone(threads):
    """A saved state_dict keeps the moments of its step, not live views that the next step updates in place."""
    rng = np.random.default_rng(1)
    opt = Adam(rng.normal(size=50).astype(np.float32), lr=0.01, block=8, threads=threads)
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


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3000), block=st.integers(1, 700),
       threads=st.integers(2, 5), wd=st.sampled_from([0.0, 1e-2]), dtype=st.sampled_from([np.float32, np.float64]))
def test_threaded_adam_is_bitwise_the_single_threaded_one(seed, n, block, threads, wd, dtype):
    """Split over threads (more threads than blocks included), every bit of p, m and v is the same,
    across a subnormal flush (step 16) too."""
    rng = np.random.default_rng(seed)
    p1 = rng.normal(size=n).astype(dtype)
    p2 = p1.copy()
    one = Adam(p1, lr=1e-2, weight_decay=wd, block=block, threads=1)
    many = Adam(p2, lr=1e-2, weight_decay=wd, block=block, threads=threads)
    assert many.threads == min(threads, -(-n // block))
    for _ in range(Adam.FLUSH_EVERY + 1):
        g = (rng.normal(size=n) * 10.0 ** rng.integers(-40, 3, size=n)).astype(dtype)
        g[rng.random(n) < 0.3] = 0
        one.step(g)
        many.step(g)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(one.exp_avg, many.exp_avg)
    np.testing.assert_array_equal(one.exp_avg_sq, many.exp_avg_sq)


def test_adam_threads_share_the_buffer_in_whole_blocks():
    opt = Adam(np.zeros(10), block=3, threads=2)
    assert opt._bounds == [0, 6, 10]           # 4 blocks: two each, the last one short
    with pytest.raises(ValueError, match="threads"):
        Adam(np.zeros(10), threads=0)
    with pytest.raises(ValueError, match="threads"):
        Adam(np.zeros(10), threads=1.5)


def test_adam_refuses_bad_hyperparameters():
    with pytest.raises(ValueError, match="betas"):
        Adam(np.zeros(2), betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="lr"):
        Adam(np.zeros(2), lr=-1)


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
    """A coordinate whose gradient stays 0 has exp_avg decaying into subnormals; they are flushed to 0."""
    tiny = np.finfo(dtype).tiny
    p = np.zeros(6, dtype)
    opt = Adam(p, lr=1e-3, block=4)
    opt.step(np.array([1, 1, 1, 1, 1, 1], dtype))
    opt.exp_avg[:] = [tiny / 4, -tiny / 3, tiny, 1.0, -tiny * 2, 0.0]
    opt.exp_avg_sq[:] = [tiny / 8, 1.0, 1.0, 1.0, 1.0, 1.0]
    before_m = opt.exp_avg.copy()
    opt._flush_subnormals(opt.exp_avg, opt.exp_avg_sq, np.empty(6, dtype))
    np.testing.assert_array_equal(opt.exp_avg, [0, 0, tiny, 1.0, -tiny * 2, 0.0])
    np.testing.assert_array_equal(opt.exp_avg_sq, [0, 1, 1, 1, 1, 1])
    assert before_m[2] == opt.exp_avg[2]


def test_adam_with_a_dead_coordinate_never_holds_subnormals_for_long():
    """Unflushed, exp_avg of a zero-gradient coordinate would take ~150 steps (0.9^t over 7 decades) to sink
    through the subnormals and then stay at a few ulps of 2^-149 for good (b1 * m rounds back to m);
    flushed, it is 0 within FLUSH_EVERY steps of going subnormal."""
    p = np.zeros(2, np.float32)
    opt = Adam(p, lr=1e-3)
    opt.step(np.array([1e-3, 1e-3], np.float32))
    steps_subnormal = 0
    for _ in range(1500):                      # coordinate 0 keeps its gradient, coordinate 1 sees only zeros
        opt.step(np.array([1e-3, 0], np.float32))
        m = opt.exp_avg[1]
        steps_subnormal += bool(m != 0 and abs(m) < np.finfo(np.float32).tiny)
        assert opt.exp_avg[0] > 0
    assert opt.exp_avg[1] == 0
    assert 0 < steps_subnormal <= Adam.FLUSH_EVERY

    unflushed = Adam(np.zeros(2, np.float32), lr=1e-3)
    unflushed.FLUSH_EVERY = 10**12                 # what torch.optim.Adam does: keep them
    unflushed.step(np.array([1e-3, 1e-3], np.float32))
    for _ in range(1500):
        unflushed.step(np.array([1e-3, 0], np.float32))
    m = unflushed.exp_avg[1]
    assert 0 < m <= 4 * np.finfo(np.float32).smallest_subnormal         # stuck: the departure the flush makes
