"""Hostile files: the IDX reader and the checkpoint loader, fuzzed with Hypothesis.

Every case must end in the project's own error (MnistDataError for IDX files,
CheckpointError for checkpoints) or in a correct result, never in another
exception, and never in an allocation the file cannot justify: headers that
claim absurd sizes are refused before the memory is taken (checked with
tracemalloc).  The number of examples scales with the Hypothesis profile
(``fast`` by default, ``--hypothesis-profile=thorough`` for many more); the
cases run are counted and printed at the end of the module.
"""
from __future__ import annotations

import collections
import gzip
import io
import json
import math
import struct
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from numpy_vae.training import checkpoint
from numpy_vae.training.checkpoint import (CheckpointError, check_meta, check_optimizer_state, check_params,
                                           load_checkpoint, save_checkpoint)
from numpy_vae.data import MnistDataError, read_idx
from numpy_vae.specs import parameter_shapes

# Fuzzing wants more examples than the property tests; scale the active profile's count.
FUZZ = settings(max_examples=4 * settings.default.max_examples)
CASES: collections.Counter = collections.Counter()
IDX_LIMIT = 100_000_000          # read_idx's documented element limit
MiB = 1 << 20


@pytest.fixture(scope="module", autouse=True)
def report_case_counts(request):
    yield
    line = "fuzz cases run: " + ", ".join(f"{k} {v}" for k, v in sorted(CASES.items())) + f"; total {sum(CASES.values())}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():          # shown even when output is captured
            reporter.write_line("\n" + line)
    else:
        print(line)


_TMP = tempfile.TemporaryDirectory(prefix="vae-fuzz-")


def write(name: str, payload: bytes) -> Path:
    path = Path(_TMP.name) / name
    path.write_bytes(payload)
    return path


class peak_memory:
    """Context manager: ``.peak`` is the most bytes Python allocated inside it."""

    def __enter__(self):
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        _, self.peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return False


# ============================================================== IDX files
def idx_bytes(arr: np.ndarray, type_byte: int = 0x08) -> bytes:
    return bytes([0, 0, type_byte, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def idx_oracle(content: bytes):
    """What a correct reader makes of uncompressed ``content``: the array, or None for 'must be refused'."""
    if len(content) < 4 or content[0] or content[1] or content[2] != 0x08 or not 1 <= content[3] <= 4:
        return None
    ndim = content[3]
    if len(content) < 4 + 4 * ndim:
        return None
    dims = struct.unpack(f">{ndim}I", content[4:4 + 4 * ndim])
    total = math.prod(dims)
    if 0 in dims or total > IDX_LIMIT or len(content) != 4 + 4 * ndim + total:
        return None
    return np.frombuffer(content[4 + 4 * ndim:], np.uint8).reshape(dims)


def check_idx(payload: bytes, content: bytes, gz: bool, name: str = "fuzz-idx-ubyte"):
    """read_idx(payload) agrees with the oracle on ``content``, the uncompressed bytes."""
    path = write(name, payload)
    expected = idx_oracle(content)
    with peak_memory() as mem:
        try:
            got = read_idx(path)
        except MnistDataError as e:
            got = e
    if expected is None:
        assert isinstance(got, MnistDataError), f"accepted a bad file: {payload[:40]!r}"
        assert str(path) in str(got)
    else:
        assert not isinstance(got, Exception), f"refused a valid file: {got}"
        assert got.dtype == np.uint8 and got.shape == expected.shape and np.array_equal(got, expected)
    # Memory: a raw file is checked against its size before anything is allocated; a gzip
    # stream is read chunk by chunk, so neither allocates what a lying header claims.
    assert mem.peak < 4 * len(content) + 2 * MiB, (mem.peak, len(content))
    return got


@st.composite
def valid_idx(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    return idx_bytes(draw(hnp.arrays(np.uint8, shape)))


DAMAGE = ["truncate", "flip", "magic", "type", "ndim", "absurd_dims", "claim_more", "append"]


@st.composite
def mutated_idx(draw, kind):
    """A valid IDX file with damage of one ``kind`` (some damage, e.g. a flipped pixel, leaves it valid)."""
    raw = bytearray(draw(valid_idx()))
    ndim = raw[3]
    if kind == "truncate":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    elif kind == "magic":
        raw[0:2] = draw(st.binary(min_size=2, max_size=2).filter(lambda b: b != b"\0\0"))
    elif kind == "type":
        raw[2] = draw(st.integers(0, 255).filter(lambda t: t != 0x08))
    elif kind == "ndim":
        raw[3] = draw(st.integers(0, 255).filter(lambda n: n != ndim))
    elif kind == "absurd_dims":
        dims = draw(st.lists(st.integers(0, 2**32 - 1), min_size=ndim, max_size=ndim))
        raw[4:4 + 4 * ndim] = struct.pack(f">{ndim}I", *dims)
    elif kind == "claim_more":
        first = struct.unpack(">I", raw[4:8])[0]
        raw[4:8] = struct.pack(">I", draw(st.integers(first + 1, 2**32 - 1)))
    elif kind == "append":
        raw += draw(st.binary(min_size=1, max_size=64))
    return bytes(raw)


@FUZZ
@given(payload=st.binary(max_size=512), gz=st.booleans())
def test_read_idx_random_bytes(payload, gz):
    CASES["read_idx random bytes"] += 1
    check_idx(gzip.compress(payload) if gz else payload, payload, gz)


@pytest.mark.parametrize("kind", DAMAGE)
@given(data=st.data(), gz=st.booleans())
def test_read_idx_damaged_files(kind, data, gz):
    """Truncations, flipped bytes, wrong magic/type/rank, absurd dims, claims of more data, trailing bytes."""
    content = data.draw(mutated_idx(kind), label="content")
    CASES[f"read_idx {kind}"] += 1
    check_idx(gzip.compress(content) if gz else content, content, gz)


@FUZZ
@given(content=valid_idx(), data=st.data())
def test_read_idx_truncated_or_damaged_gzip(content, data):
    CASES["read_idx broken gzip"] += 1
    gz = bytearray(gzip.compress(content))
    if data.draw(st.booleans(), label="truncate"):
        gz = gz[:data.draw(st.integers(2, len(gz) - 1), label="cut")]
    else:   # damage the deflate stream or the CRC/size trailer (bytes 10.. of the member)
        for _ in range(data.draw(st.integers(1, 3), label="flips")):
            i = data.draw(st.integers(10, len(gz) - 1), label="at")
            gz[i] ^= data.draw(st.integers(1, 255), label="xor")
    path = write("fuzz-idx-ubyte.gz", bytes(gz))
    try:
        got = read_idx(path)
    except MnistDataError as e:
        assert str(path) in str(e)
    else:   # a flip that gzip cannot notice would have to leave the very same content
        assert got.tobytes() == idx_oracle(content).tobytes()


@FUZZ
@given(ndim=st.integers(1, 4), data=st.data(), gz=st.booleans())
def test_read_idx_absurd_headers_allocate_nothing(ndim, data, gz):
    """Headers claiming more than the element limit: refused before any allocation, raw or gzip."""
    CASES["read_idx absurd header"] += 1
    dims = data.draw(st.lists(st.integers(1, 2**32 - 1), min_size=ndim, max_size=ndim)
                     .filter(lambda d: math.prod(d) > IDX_LIMIT), label="dims")
    content = bytes([0, 0, 8, ndim]) + struct.pack(f">{ndim}I", *dims) + data.draw(st.binary(max_size=64), label="tail")
    path = write("huge-idx-ubyte", gzip.compress(content) if gz else content)
    with peak_memory() as mem, pytest.raises(MnistDataError, match="limit"):
        read_idx(path)
    assert mem.peak < MiB


def test_read_idx_gzip_claiming_more_than_it_holds_allocates_little():
    content = bytes([0, 0, 8, 1]) + struct.pack(">I", 50_000_000) + b"abcd"
    path = write("claims-idx1-ubyte.gz", gzip.compress(content))
    with peak_memory() as mem, pytest.raises(MnistDataError, match="truncated"):
        read_idx(path)
    assert mem.peak < 8 * MiB


def test_read_idx_raw_file_claiming_more_than_it_holds_allocates_nothing():
    """A 12-byte raw file claiming 99,999,999 elements: refused from its size, nothing allocated."""
    path = write("claims-idx1-ubyte", bytes([0, 0, 8, 1]) + struct.pack(">I", IDX_LIMIT - 1) + b"abcd")
    with peak_memory() as mem, pytest.raises(MnistDataError, match="truncated"):
        read_idx(path)
    assert mem.peak < MiB


# ============================================================ checkpoints
SHAPES = parameter_shapes(hidden=(6,), latent=2)


def valid_params(rng_seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rng_seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def valid_optim() -> dict[str, np.ndarray]:
    n = sum(math.prod(s) for s in SHAPES.values())
    return {"step": np.array(3, np.int64), "exp_avg": np.zeros(n, np.float32), "exp_avg_sq": np.ones(n, np.float32)}


def valid_meta() -> dict:
    rng = np.random.default_rng(0)
    row = {"epoch": 1, "train_loss": 1.0, "train_recon": 1.0, "train_kl": 0.0, "test_loss": 1.0, "test_recon": 1.0,
           "test_kl": 0.0, "lr": 1e-3, "seconds": 0.1}
    return {"config": {"hidden": [6], "latent": 2}, "epoch": 1, "step": 10, "metrics": [row], "backend": "numpy",
            "rng": {"shuffle": rng.bit_generator.state, "noise": rng.bit_generator.state}}


def valid_npz() -> bytes:
    path = Path(_TMP.name) / "valid.npz"
    save_checkpoint(path, valid_params(), valid_optim(), valid_meta())
    return path.read_bytes()


VALID_NPZ = valid_npz()


def npy_bytes(descr: str, fortran: bool, shape, payload: bytes) -> bytes:
    """A .npy member with a header written by hand (so it may lie)."""
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {tuple(shape)!r}, }}"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + payload


def zip_of(members: dict[str, bytes], compress=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def check_load(payload: bytes, name: str = "fuzz.npz", must_fail: bool = False):
    """load_checkpoint either refuses with CheckpointError naming the file, or returns well-formed parts."""
    path = write(name, payload)
    with peak_memory() as mem:
        try:
            result = load_checkpoint(path)
        except CheckpointError as e:
            assert str(path) in str(e)
            result = e
    assert mem.peak < 4 * len(payload) + 2 * MiB, (mem.peak, len(payload))
    if must_fail:
        assert isinstance(result, CheckpointError), "a bad checkpoint was accepted"
    if not isinstance(result, CheckpointError):
        params, optim, meta = result
        assert params and all(isinstance(v, np.ndarray) and not v.dtype.hasobject for v in params.values())
        assert isinstance(meta, dict)
        try:                                        # and what loaded is either usable or refused by the checks
            check_params(params, SHAPES, path)
        except CheckpointError:
            pass
    return result


@FUZZ
@given(payload=st.binary(max_size=2048))
def test_checkpoint_random_bytes(payload):
    CASES["checkpoint random bytes"] += 1
    check_load(payload, must_fail=True)


@FUZZ
@given(cut=st.integers(0, len(VALID_NPZ) - 1))
def test_checkpoint_truncated(cut):
    CASES["checkpoint truncated"] += 1
    check_load(VALID_NPZ[:cut], must_fail=True)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(VALID_NPZ) - 1), st.integers(1, 255)), min_size=1, max_size=8))
def test_checkpoint_flipped_bytes(flips):
    CASES["checkpoint flipped bytes"] += 1
    raw = bytearray(VALID_NPZ)
    for i, x in flips:
        raw[i] ^= x
    check_load(bytes(raw))


DESCRS = ["<f4", "<f8", ">f4", "<f2", "<i8", "|u1", "|b1", "<c8", "|O", "<U8", "|S4", "|V8", "<M8[s]",
          [("a", "<f4"), ("b", "|O")], [("a", "<f4"), ("b", "<i4")], "not a dtype"]


@FUZZ
@given(descr=st.sampled_from(DESCRS), fortran=st.booleans(),
       shape=st.lists(st.one_of(st.integers(0, 8), st.integers(-5, 2**62)), max_size=4),
       payload=st.binary(max_size=256), member=st.sampled_from(["params/encoder.0.bias", "optim/step", "meta"]),
       compress=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_checkpoint_lying_npy_headers(descr, fortran, shape, payload, member, compress):
    """Members whose headers claim any dtype (objects included) and any shape, absurd ones too."""
    CASES["checkpoint crafted .npy header"] += 1
    members = {"params/encoder.0.weight.npy": npy_bytes("<f4", False, (2,), b"\0" * 8),
               f"{member}.npy": npy_bytes(descr, fortran, shape, payload)}
    result = check_load(zip_of(members, compress))
    if not isinstance(result, CheckpointError):          # then the header told the truth
        arrays = {**{f"params/{k}": v for k, v in result[0].items()}, **{f"optim/{k}": v for k, v in result[1].items()}}
        assert member == "meta" or math.prod(arrays[member].shape) * arrays[member].dtype.itemsize == len(payload)


@FUZZ
@given(meta=st.one_of(st.text(max_size=50), st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20).map(json.dumps)))
def test_checkpoint_meta_is_any_string(meta):
    """Non-JSON, JSON that is not an object, objects lacking fields: each refused by load or check_meta."""
    CASES["checkpoint meta strings"] += 1
    members = {"params/encoder.0.weight.npy": npy_bytes("<f4", False, (1,), b"\0" * 4)}
    buf = io.BytesIO()
    np.save(buf, np.array(meta))
    members["meta.npy"] = buf.getvalue()
    result = check_load(zip_of(members))
    if not isinstance(result, CheckpointError):
        with pytest.raises(CheckpointError, match="meta field"):
            check_meta(result[2], "fuzz.npz")


TRAPPED = Path(_TMP.name) / "pickle-was-loaded"


class _Trap:
    """Unpickling this would create the file ``TRAPPED`` (a stand-in for arbitrary code)."""

    def __reduce__(self):
        return (open, (str(TRAPPED), "w"))


@pytest.mark.parametrize("member", ["params/encoder.0.weight", "optim/exp_avg", "meta"])
def test_checkpoint_refuses_pickled_object_arrays(member):
    CASES["checkpoint pickled object array"] += 1
    buf = io.BytesIO()
    np.savez(buf, **{"params/encoder.0.bias": np.zeros(3, np.float32), member: np.array([_Trap(), 1], dtype=object)})
    err = check_load(buf.getvalue(), must_fail=True)
    assert "Python objects" in str(err) and member in str(err)
    assert not TRAPPED.exists()


def test_checkpoint_refuses_foreign_and_missing_files(tmp_path):
    CASES["checkpoint foreign file"] += 4
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.npz")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)
    docx = write("report.docx", zip_of({"word/document.xml": b"<w:document/>"}))
    with pytest.raises(CheckpointError, match="word/document.xml"):
        load_checkpoint(docx)
    plain = write("plain.npz", zip_of({"x.npy": npy_bytes("<f4", False, (1,), b"\0" * 4)}))
    with pytest.raises(CheckpointError, match="no parameters"):
        load_checkpoint(plain)


def test_checkpoint_zip_claiming_too_much_is_refused_before_reading(monkeypatch):
    """A zip whose members declare more than MAX_CHECKPOINT_BYTES (a bomb): refused from the directory alone."""
    CASES["checkpoint zip bomb"] += 1
    monkeypatch.setattr(checkpoint, "MAX_CHECKPOINT_BYTES", 4 * MiB)
    buf = io.BytesIO()
    np.savez_compressed(buf, **{"params/a": np.zeros(8 * MiB, np.uint8)})      # 8 MiB of zeros: ~8 KiB on disk
    path = write("bomb.npz", buf.getvalue())
    with peak_memory() as mem, pytest.raises(CheckpointError, match="more than the limit"):
        load_checkpoint(path)
    assert mem.peak < MiB


def test_checkpoint_header_claiming_a_terabyte_allocates_nothing():
    CASES["checkpoint absurd shape"] += 1
    path = write("tera.npz", zip_of({"params/a.npy": npy_bytes("<f8", False, (2**37,), b"\0" * 64)}))
    with peak_memory() as mem, pytest.raises(CheckpointError, match="claims shape"):
        load_checkpoint(path)
    assert mem.peak < MiB


def test_checkpoint_config_claiming_a_huge_model_builds_nothing(tmp_path):
    """A meta config asking for 20 billion parameters: refused before any model is allocated."""
    from numpy_vae.training.restore import load_backend
    from numpy_vae.config import TrainConfig
    from numpy_vae.training import train
    CASES["checkpoint absurd config"] += 2
    run = tmp_path / "run"
    run.mkdir()
    meta = {**valid_meta(), "config": {**TrainConfig().to_json(), "hidden": [100_000, 100_000]}}
    save_checkpoint(run / "last.npz", valid_params(), valid_optim(), meta)
    with peak_memory() as mem:
        with pytest.raises(CheckpointError, match=r"checkpoint .*last\.npz: its saved configuration is invalid .*20,1.* parameters"):
            load_backend(run / "last.npz")
        with pytest.raises(CheckpointError, match="saved config cannot run .*parameters"):
            train(None, resume=run, progress=False, log=lambda *a: None)
    assert mem.peak < MiB


# -------------------------------------------------------- check_params & co
@st.composite
def damaged_params(draw):
    params = valid_params(draw(st.integers(0, 3)))
    name = draw(st.sampled_from(sorted(SHAPES)))
    kind = draw(st.sampled_from(["missing", "extra", "shape", "dtype", "nan", "inf"]))
    if kind == "missing":
        del params[name]
    elif kind == "extra":
        name = draw(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12)
                    .filter(lambda k: k not in SHAPES))     # (zip member names end at a NUL)
        params[name] = np.zeros(1, np.float32)
    elif kind == "shape":
        shape = tuple(draw(st.lists(st.integers(0, 7), max_size=3)))
        if shape == SHAPES[name]:
            shape = shape + (1,)
        params[name] = np.zeros(shape, np.float32)
    elif kind == "dtype":
        dtype = draw(st.sampled_from([np.int32, np.int64, np.float16, np.complex64, np.bool_, np.uint8]))
        params[name] = params[name].astype(dtype)
    else:
        flat = params[name].reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = np.nan if kind == "nan" else -np.inf
    return kind, name, params


@FUZZ
@given(case=damaged_params(), via_file=st.booleans())
def test_check_params_names_the_misfit(case, via_file):
    """Missing keys, foreign keys, wrong shapes, wrong dtypes, NaN/inf: CheckpointError naming the parameter."""
    kind, name, params = case
    CASES[f"check_params {kind}"] += 1
    if via_file:
        path = Path(_TMP.name) / "damaged.npz"
        save_checkpoint(path, params, valid_optim(), valid_meta())
        params = load_checkpoint(path)[0]
    with pytest.raises(CheckpointError) as info:
        check_params(params, SHAPES, "damaged.npz")
    assert repr(name) in str(info.value) or name in str(info.value)


@FUZZ
@given(key=st.sampled_from(["step", "exp_avg", "exp_avg_sq"]),
       kind=st.sampled_from(["missing", "shape", "dtype", "nan", "negative"]))
def test_check_optimizer_state_names_the_misfit(key, kind):
    CASES["check_optimizer_state"] += 1
    state = valid_optim()
    if kind == "missing":
        del state[key]
    elif kind == "shape":
        state[key] = np.zeros((2, 2), state[key].dtype)
    elif kind == "dtype":
        state[key] = state[key].astype(np.float32 if key == "step" else np.int64)
    elif kind == "nan":
        state[key] = np.full(state[key].shape, np.nan)     # float: wrong for step, non-finite for the moments
    else:
        state[key] = -np.ones(state[key].shape, np.int64 if key == "step" else np.float32)
        if key == "exp_avg":
            check_optimizer_state(state, valid_optim(), "x.npz")   # a negative first moment is a legitimate value
            return
    with pytest.raises(CheckpointError, match=key):
        check_optimizer_state(state, valid_optim(), "x.npz")


@pytest.mark.parametrize("field", ["config", "backend", "epoch", "step", "rng", "metrics"])
def test_check_meta_names_a_missing_field(field):
    CASES["check_meta missing field"] += 1
    meta = valid_meta()
    del meta[field]
    with pytest.raises(CheckpointError, match=f"meta field '{field}"):
        check_meta(meta, "x.npz", ["test_loss"])


# ------------------------------------------------------------ torch files
import torch  # noqa: E402  (a dependency: without it these tests fail, never skip)


def torch_file(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def valid_pt() -> bytes:
    return torch_file({k: torch.from_numpy(v) for k, v in valid_params().items()})


def test_torch_state_dict_loads_with_weights_only():
    params, optim, meta = load_checkpoint(write("sd.pt", valid_pt()))
    assert optim == {} and meta == {}
    check_params(params, SHAPES, "sd.pt")
    assert all(np.array_equal(params[k], v) for k, v in valid_params().items())


@pytest.mark.parametrize("make", [lambda: _Trap(), lambda: {"encoder.0.weight": _Trap()},
                                  lambda: {"w": torch.zeros(2), "hook": print}],
                         ids=["trap", "trap-in-dict", "function"])
def test_torch_file_with_code_is_refused(make):
    CASES["torch file with code"] += 1
    err = check_load(torch_file(make()), name="evil.pt", must_fail=True)
    assert "weights_only=True) refuses it" in str(err)
    assert not TRAPPED.exists()


@pytest.mark.parametrize("make", [lambda: [torch.zeros(2)], lambda: {"a": 1.0}, lambda: {}, lambda: torch.zeros(3),
                                  lambda: {"a": torch.zeros(2, dtype=torch.bfloat16)}],
                         ids=["list", "float", "empty", "tensor", "bfloat16"])
def test_torch_file_that_is_not_a_state_dict_is_refused(make):
    CASES["torch file not a state_dict"] += 1
    check_load(torch_file(make()), name="odd.pt", must_fail=True)


@FUZZ
@given(data=st.data())
def test_torch_file_damaged(data):
    CASES["torch file damaged"] += 1
    raw = bytearray(_VALID_PT.setdefault("pt", valid_pt()))
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="cut")]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            raw[data.draw(st.integers(0, len(raw) - 1), label="at")] ^= data.draw(st.integers(1, 255), label="xor")
    check_load(bytes(raw), name="damaged.pt")


_VALID_PT: dict = {}
