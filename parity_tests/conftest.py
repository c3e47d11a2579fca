"""Fixtures of the parity suite, and the table of measured worst-case relative errors printed at the end."""
from __future__ import annotations

import contextlib

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run each parity test single-threaded (torch, and NumPy's BLAS where threadpoolctl is installed).

    Parity is about arithmetic, not speed: on a small shared CI machine, worker threads over
    these small tensors only spin against each other (measured: 50 steps of both backends on a
    small model take 4.2 s with the default threads, 0.5 s with one).  The previous settings are
    restored after each test, so tests elsewhere are unaffected.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
            stack.enter_context(threadpool_limits(limits=1))
        except ImportError:
            pass
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    try:
        from parity_helpers import WORST
    except ImportError:
        return
    if not WORST:
        return
    tr = terminalreporter
    tr.section("parity: worst relative error ||numpy - torch|| / ||torch|| per test")
    width = max(len(test) for test, _ in WORST)
    for (test, dtype), (err, what) in sorted(WORST.items()):
        tr.write_line(f"{test:<{width}}  {dtype:<13}  {err:9.2e}  ({what})")
    if any(dtype.endswith("kl~0") for _, dtype in WORST):
        tr.write_line("(kl~0: kl, or a loss made of it, at rounding level of the KL's terms: held to 8 ulps "
                      "of them, see torch_vae.parity.kl_rounding)")
