"""The package layout the design card fixes, checked from the source (imports inside functions count).

- no import circle among the modules of numpy_vae, torch_vae and benchmarks;
- numpy_vae imports neither torch_vae nor benchmarks, and torch only where it reads torch's own files
  (a torch.save state_dict in training/checkpoint.py, torchvision's MNIST download in data/fetch.py);
- torch_vae imports no training loop and no reporting (specs, data, config, inputs, streams,
  the checkpoint format: yes);
- the training loop imports no reporting code (`vae train` writes the report after it);
- the reference (numpy_vae/nn) stands alone: it imports nothing of the tuned kernels (numpy_vae/kernels);
- every hand-written backward in numpy_vae/nn and numpy_vae/kernels links its derivation in
  docs/gradients.md, and the linked section exists;
- importing numpy_vae has no side effect: it sets no environment variable and loads no NumPy, so the
  `vae` command can set OpenBLAS's threads before NumPy loads (and does).
"""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("numpy_vae", "torch_vae", "benchmarks")


def _modules() -> dict[str, Path]:
    mods = {}
    for top in PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module (of any package) that ``name`` imports, resolved to absolute names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _project_edges() -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        targets = set()
        for t in _imports(name, path):
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            # a module inside a package does not depend on that package's __init__ for this purpose
            if t and t != name and not name.startswith(t + "."):
                targets.add(t)
        edges[name] = targets
    return edges


def test_no_import_circle():
    edges, state, cycles = _project_edges(), {}, []

    def visit(u, stack):
        state[u] = 1
        stack.append(u)
        for v in sorted(edges[u]):
            if state.get(v) == 1:
                cycles.append(" -> ".join(stack[stack.index(v):] + [v]))
            elif v not in state:
                visit(v, stack)
        stack.pop()
        state[u] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("numpy_vae")))
def test_numpy_vae_imports_neither_its_port_nor_torch(name):
    allowed = {"numpy_vae.training.checkpoint": {"torch"}, "numpy_vae.data.fetch": {"torch", "torchvision"}}
    tops = {t.split(".")[0] for t in _imports(name, MODULES[name])}
    bad = tops & ({"torch", "torchvision", "torch_vae", "benchmarks"} - allowed.get(name, set()))
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("torch_vae")))
def test_torch_vae_imports_no_training_loop_and_no_report(name):
    bad = {t for t in _imports(name, MODULES[name])
           if t.startswith(("numpy_vae.training.loop", "numpy_vae.training.run_folder", "numpy_vae.report",
                            "numpy_vae.cli.train"))
           or t in ("numpy_vae.training", "numpy_vae.training.train")}
    assert not bad, f"{name} imports {sorted(bad)}"


def test_the_training_loop_imports_no_reporting():
    for name in ("numpy_vae.training.loop", "numpy_vae.training.run_folder", "numpy_vae.training.checkpoint"):
        bad = {t for t in _imports(name, MODULES[name]) if t.startswith(("numpy_vae.report", "matplotlib"))}
        assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("numpy_vae.nn")))
def test_the_reference_imports_no_tuned_kernel(name):
    bad = {t for t in _imports(name, MODULES[name]) if t.startswith("numpy_vae.kernels")}
    assert not bad, f"{name} imports {sorted(bad)}"


def _python(code: str, **env) -> str:
    """stdout of ``python -c code`` in a fresh process, OPENBLAS_THREAD_TIMEOUT removed from its environment."""
    child = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    child["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-c", code], env={**child, **env}, capture_output=True, text=True,
                          check=True, timeout=120).stdout.strip()


def test_importing_numpy_vae_changes_no_environment_and_loads_no_numpy():
    assert _python("import os, numpy_vae; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))") == "None"
    assert _python("import sys, numpy_vae, numpy_vae.cli, numpy_vae.kernels.threads; "
                   "print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))") == "[]"
    assert _python("import numpy_vae; print(numpy_vae.VAE.__name__, numpy_vae.nn.Conv2d.__module__)") \
        == "VAE numpy_vae.nn.conv"                                  # the names still load, on first use


def test_the_vae_command_shortens_openblas_spin_before_numpy_loads():
    """The `vae` command sets OPENBLAS_THREAD_TIMEOUT=20 (unless set) before NumPy, hence OpenBLAS, loads."""
    code = ("import os, sys\n"
            "seen = []\n"
            "sys.addaudithook(lambda e, a: seen.append(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
            " if e == 'import' and a[0] == 'numpy' and not seen else None)\n"
            "from numpy_vae.cli import main\n"
            "try:\n    main(['train', '--epochs', '0'])\nexcept SystemExit:\n    pass\n"
            "print(seen[:1], os.environ.get('OPENBLAS_THREAD_TIMEOUT'))")
    assert _python(code) == "['20'] 20"
    assert _python(code, OPENBLAS_THREAD_TIMEOUT="7") == "['7'] 7"        # a value already set is kept


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the Markdown headings: lower case, punctuation dropped, spaces to '-'."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", markdown, re.M)}


def test_every_backward_links_an_existing_derivation():
    anchors = _anchors((ROOT / "docs" / "gradients.md").read_text())
    missing, broken = [], []
    for path in sorted([*(ROOT / "numpy_vae" / "nn").glob("*.py"), *(ROOT / "numpy_vae" / "kernels").glob("*.py")]):
        text = path.read_text()
        if "def backward" not in text:
            continue
        links = re.findall(r"docs/gradients\.md#([\w-]+)", text)
        if not links:
            missing.append(path.name)
        broken += [f"{path.name}: #{a}" for a in links if a not in anchors]
    assert not missing, f"backwards without a link to docs/gradients.md: {missing}"
    assert not broken, f"links to sections that do not exist: {broken}"
