"""Hypothesis strategies for convolution geometries, shared by the convolution tests in tests/."""
from hypothesis import strategies as st


@st.composite
def conv_geometry(draw, transpose: bool, batch: int = 2, channels: int = 3, size: int = 6, kernel: int = 3):
    """A valid geometry: batch 1-``batch``, channels 1-``channels``, size 1-``size`` and kernel 1-``kernel``
    per axis, stride 1-3, padding 0-2; for a transposed convolution output_padding below the stride and a
    non-empty output, for Conv2d a padded input at least as large as the kernel."""
    kernels = (draw(st.integers(1, kernel)), draw(st.integers(1, kernel)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if transpose:
        output_padding = tuple(draw(st.integers(0, s - 1)) for s in stride)
        sizes = (draw(st.integers(1, size)), draw(st.integers(1, size)))
        padding = tuple(draw(st.integers(0, min(2, ((n - 1) * s + k + op - 1) // 2)))
                        for n, k, s, op in zip(sizes, kernels, stride, output_padding))
        extra = {"output_padding": output_padding}
    else:
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        sizes = tuple(draw(st.integers(max(1, k - 2 * p), size)) for k, p in zip(kernels, padding))
        extra = {}
    return dict(batch=draw(st.integers(1, batch)), c_in=draw(st.integers(1, channels)),
                c_out=draw(st.integers(1, channels)), size=sizes, kernel=kernels, stride=stride, padding=padding,
                **extra)
