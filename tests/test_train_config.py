"""The training configuration in parts, each field declared once (issue 21.4): the flags of `vae train`,
`vae sweep` and `vae parity` come from those declarations, `--config` re-runs a saved configuration, and
flags that would be ignored are refused (issue 22.3)."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from cli_helpers import run_main
from numpy_vae.cli.args import flag
from numpy_vae.cli.main import build_parser
from numpy_vae.config import FIELDS, PARTS, ConfigError, ModelConfig, TrainConfig, refuse_ignored, validate_config
from numpy_vae.presets import PRESETS, preset_values
from numpy_vae.training import train
from numpy_vae.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_every_field_is_in_exactly_one_part_and_declares_its_kind_and_help():
    owners = {}
    for part, cls in PARTS.items():
        for f in dataclasses.fields(cls):
            assert f.name not in owners, f"{f.name} in {owners.get(f.name)} and {part}"
            owners[f.name] = part
    assert set(owners) == set(FIELDS)
    for name, f in FIELDS.items():
        assert f.metadata["help"] and f.metadata["kind"].what, name
        assert f.metadata["kind"].check(f.default), f"{name}'s default fails its own check"


def test_a_part_alone():
    config = TrainConfig(arch="mlp", hidden=(32,), latent=3, lr=0.01)
    model = config.part(ModelConfig)
    assert model == ModelConfig(hidden=(32,), latent=3) and model.spec() == config.spec()


def test_no_flag_is_typed_twice():
    """The commands that set training fields (train, sweep, parity) type none of their flags by hand: each is
    generated from the field's declaration.  (Other commands' --seed, --backend ... are other facts: the seed
    of an evaluation's samples, the backend that serves pictures.)"""
    flags = {flag(name) for name in FIELDS}
    typed = []
    for path in [REPO / "numpy_vae/cli/train.py", REPO / "numpy_vae/cli/sweep.py", REPO / "torch_vae/parity.py"]:
        for match in re.finditer(r"add_argument\(\s*\"(--[\w-]+)\"", path.read_text()):
            if match[1] in flags:
                typed.append(f"{path.relative_to(REPO)}: {match[1]}")
    assert typed == ["torch_vae/parity.py: --dtype", "torch_vae/parity.py: --device"]   # other choices: both, all


def test_vae_train_has_a_flag_for_every_field():
    parser = build_parser(["train"])
    args = parser.parse_args(["train"])
    assert all(hasattr(args, name) for name in FIELDS)
    assert all(getattr(args, name) is None for name in FIELDS)        # left out: the preset's or the default


def test_every_preset_sets_fields_only():
    for name in [*PRESETS, "linear-8-2"]:
        assert set(preset_values(name)) <= set(FIELDS), name
        validate_config(TrainConfig(**{**vars(TrainConfig()), **preset_values(name)}))


@pytest.mark.parametrize("path", sorted(REPO.glob("docs/results/*/config.json")), ids=lambda p: p.parent.name)
def test_old_config_json_files_still_load(path):
    saved = json.loads(path.read_text())
    config = TrainConfig.from_json(saved)
    validate_config(config)
    assert {k: v for k, v in config.to_json().items() if k in saved} == saved


# -------------------------------------------------------- flags that do not apply, values that cannot run
BAD = [
    (["--runs-dir", ""], "argument --runs-dir: expected a folder path, got ''"),
    (["--arch", "conv", "--hidden", "7"],
     "--hidden 7 with --arch conv: --hidden applies only to --arch burda2 or --arch mlp; leave it out"),
    (["--preset", "conv", "--dropout", "0.1"], "--dropout 0.1 with --arch conv: --dropout applies only to"),
    (["--samples", "5"], "--samples 5 with --objective elbo: --samples applies only to --objective iwae"),
    (["--likelihood-variance", "0.5"], "--likelihood-variance 0.5 with --likelihood bernoulli: "),
    (["--kernels", "reference", "--backend", "torch"], "--kernels reference with --backend torch: --kernels applies "
                                                       "only to --backend numpy; leave it out"),
    (["--config", "nowhere.json"], "--config nowhere.json: no such file"),
    (["--config", "cfg.json", "--preset", "quick"], "--preset cannot be combined with --config"),
    (["--resume", "runs/done", "--config", "cfg.json"], "--config cannot be combined with --resume"),
]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAE_DATA_DIR", raising=False)
    (tmp_path / "runs" / "done").mkdir(parents=True)
    (tmp_path / "runs" / "done" / "last.npz").write_bytes(b"")
    (tmp_path / "cfg.json").write_text(json.dumps(TrainConfig().to_json()))
    return tmp_path


@pytest.mark.parametrize(("args", "expected"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_flag_that_would_be_ignored_is_one_line(sandbox, capsys, args, expected):
    before = sorted(sandbox.rglob("*"))
    code, out, err = run_main(["train", *args], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("vae: error: ") and expected in err, err
    assert out == "" and sorted(sandbox.rglob("*")) == before


def test_a_value_that_does_not_apply_is_refused_from_python_too(tmp_path):
    config = TrainConfig(arch="conv", hidden=(7,), runs_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"hidden=\(7,\) does not apply with arch='conv'"):
        refuse_ignored(config)
    with pytest.raises(ConfigError, match=r"hidden=\(7,\) does not apply with arch='conv'"):
        train(config, progress=False, log=lambda *a: None)
    assert list(tmp_path.iterdir()) == []
    validate_config(config)                 # a run written before the check (it recorded --hidden 7) still loads
    refuse_ignored(TrainConfig(arch="conv"))                    # the default hidden sizes are not a choice


def test_config_of_an_old_run_drops_what_did_not_apply(sandbox, capsys, monkeypatch):
    import numpy_vae.training as training
    seen = []
    monkeypatch.setattr(training, "train", lambda config, **kw: seen.append(config) or Path("runs/x"))
    (sandbox / "old.json").write_text(json.dumps({**TrainConfig(arch="conv").to_json(), "hidden": [7], "samples": 4}))
    assert run_main(["train", "--config", "old.json", "--no-figures"], capsys)[0] == 0
    assert seen[0].arch == "conv" and seen[0].hidden == (512, 256) and seen[0].samples == 1


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "is not a run configuration written by `vae train`"),
    ("[1, 2]", "is not a run configuration written by `vae train` (expected a JSON object"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (json.dumps({"epochs": "ten"}), "epochs='ten': expected an integer >= 1"),
    (json.dumps({"lr": float("nan")}), "lr=nan: expected a number in (0, 1e+06]"),
])
def test_a_bad_config_file_is_one_line_naming_it(sandbox, capsys, content, expected):
    (sandbox / "bad.json").write_text(content)
    code, _, err = run_main(["train", "--config", "bad.json"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--config bad.json" in err and expected in err, err
    assert not (sandbox / "runs" / "latest").exists()


# ------------------------------------------------------------------- threads
def test_more_threads_than_usable_cores_are_capped_with_a_warning(sandbox, capsys, monkeypatch):
    """--threads 5000 was accepted silently (one epoch 0.6 s -> 42.9 s on 2 cores)."""
    import numpy_vae.training as training
    from numpy_vae.kernels.threads import available_cores
    seen = []
    monkeypatch.setattr(training, "train", lambda config, **kw: seen.append(config) or Path("runs/x"))
    cores = available_cores()
    code, _, err = run_main(["train", "--threads", "5000", "--no-figures"], capsys)
    assert code == 0 and seen[-1].threads == cores
    assert err == f"vae: warning: --threads 5000: this process may use {cores} cores; training on {cores} threads\n"
    code, _, err = run_main(["train", "--threads", "1", "--no-figures"], capsys)
    assert code == 0 and seen[-1].threads == 1 and err == ""


# ------------------------------------------------------------------- --config
def test_config_reruns_a_run_and_explicit_flags_win(real_mnist_dir, tmp_path, capsys):
    common = ["--data-dir", str(real_mnist_dir), "--runs-dir", str(tmp_path), "--no-progress", "--no-figures"]
    assert run_main(["train", "--epochs", "1", "--train-limit", "200", "--batch-size", "50", "--hidden", "16",
                     "--latent", "2", "--seed", "5", "--activation", "tanh", "--name", "first", *common], capsys)[0] == 0
    first = tmp_path / "first"
    # the saved configuration again, under a new automatic name: the same run, to the last digit
    assert run_main(["train", "--config", str(first / "config.json"), *common], capsys)[0] == 0
    again = next(p for p in tmp_path.iterdir() if p.name.startswith("numpy-"))
    a, b = json.loads((first / "config.json").read_text()), json.loads((again / "config.json").read_text())
    assert {**a, "name": None} == b                              # a new run: automatic name
    rows = [load_checkpoint(p / "last.npz")[2]["metrics"] for p in (first, again)]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows[0]] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in rows[1]]
    # a run folder names its config.json too; explicit options win over the file
    assert run_main(["train", "--config", str(first), "--epochs", "2", "--seed", "6", "--name", "longer", *common],
                    capsys)[0] == 0
    longer = json.loads((tmp_path / "longer" / "config.json").read_text())
    assert longer == {**a, "epochs": 2, "seed": 6, "name": "longer"}
