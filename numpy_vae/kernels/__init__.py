"""The tuned kernels that training runs by default, each proven equal to its reference in numpy_vae.nn.

    adam.py      FastAdam: torch.optim.Adam's numbers with moments stored at a scale of their own, in
                 blocks over one or two threads (reference: numpy_vae.nn.optimizers.Adam)
    conv.py      FastConv2d, FastConvTranspose2d: im2col and one matmul on channels-last memory, with
                 reused work arrays (reference: numpy_vae.nn.conv, the explicit sum over kernel taps)
    linear.py    FastLinear: nn's Linear with its batch-1 weight gradient as an outer product (bitwise the same)
    threads.py   the cores this process may use, the tuner that picks Adam's threads, OpenBLAS's spin time
                 (no NumPy import: the ``vae`` command calls it before NumPy loads)

``vae train --kernels reference`` trains with the references instead (``--kernels fast``, the
default, with these).  tests/test_kernels.py holds each kernel to its reference: bitwise where the
arithmetic is the same, else within a bound derived from the rounding, stated in each test.
Nothing here runs on import.
"""
