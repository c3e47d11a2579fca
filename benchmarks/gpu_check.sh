#!/usr/bin/env bash
# benchmarks/gpu_check.sh OUT_DIR [DATA_DIR]
#
# Everything this project has never run on a GPU, in one command, within 8 minutes, offline:
#   1. checks for a GPU (fails at once, exit 3, where there is none) and for the Python modules
#      the checks need (torch, numpy, pytest, hypothesis, matplotlib; exit 4 naming the missing);
#   2. installs the project without dependencies and without the network
#      (pip install --no-deps --no-build-isolation --no-index -e .), or, where that fails,
#      puts the repository on PYTHONPATH;
#   3. finds MNIST: DATA_DIR, else $VAE_DATA_DIR, else data/ in the repository or beside it
#      (../data, ../MNIST, ../mnist); either torchvision's layout DIR/MNIST/raw/<files> or a
#      folder holding the four files themselves (train-images-idx3-ubyte[.gz], ...); without
#      it the benchmark uses synthetic images and the training smoke run is skipped;
#   4. runs the CUDA parity tests (parity_tests/test_cuda_parity.py and every parity test
#      with "cuda" in its name);
#   5. runs the CUDA benchmark: `python -m benchmarks --peers --cuda` (NumPy's train_step on the
#      CPU against the torch contestants on the GPU; torch.compile at batch 128);
#   6. with MNIST: one short epoch of `vae train --backend torch --device cuda`.
# Each stage is bounded by `timeout`, out of one 8-minute budget (GPU_CHECK_BUDGET_S).
#
# OUT_DIR receives (at most 8 files, no subfolders): summary.txt (one line per stage, and
# the verdict), log.txt (everything printed), env.txt (GPU, driver, versions), parity.xml
# (JUnit), peers.md and peers.json (the benchmark), train.txt (the training smoke run).
# Exit status: 0 every stage passed; 1 a stage failed or ran out of time; 2 usage;
# 3 no CUDA; 4 a module is missing.  PYTHON (default python3) picks the interpreter.
# GPU_CHECK_DRY_RUN=1 rehearses every stage on the CPU with tiny sizes and no pip install
# (the PYTHONPATH way), to check the script itself on a machine without a GPU.
set -u -o pipefail

usage() { echo "usage: $0 OUT_DIR [DATA_DIR]   (see the top of this script)" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
case "$1" in -h|--help) usage ;; esac

START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-480}
PYTHON=${PYTHON:-python3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1" || { echo "gpu_check: cannot create OUT_DIR $1" >&2; exit 2; }
OUT=$(cd "$1" && pwd)
LOG="$OUT/log.txt"
SUMMARY="$OUT/summary.txt"
: > "$LOG"
: > "$SUMMARY"

say() { echo "gpu_check: $*" | tee -a "$LOG"; }
record() { echo "$*" >> "$SUMMARY"; say "$*"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
fail_now() {   # code, message: one line, on stderr and in the summary
    echo "gpu_check: $2" >&2
    echo "FAILED: $2" >> "$SUMMARY"
    echo "gpu_check: $2" >> "$LOG"
    exit "$1"
}

DRY=${GPU_CHECK_DRY_RUN:-0}
DEVICE=cuda
BENCH_SIZES=(--quick --repeats 7 --min-time 0.1)
TRAIN_SIZES=(--epochs 1 --train-limit 4096)
if [ "$DRY" = 1 ]; then
    DEVICE=cpu
    BENCH_SIZES=(--quick --hidden 32,16 --batches 1,8 --repeats 2 --min-time 0.01)
    TRAIN_SIZES=(--epochs 1 --train-limit 512 --hidden 32,16 --latent 4)
    record "DRY RUN (GPU_CHECK_DRY_RUN=1): every stage on the CPU, tiny sizes; nothing here was measured on a GPU"
fi

# ---------------------------------------------------------------- 1. a GPU, and the modules
if [ "$DRY" != 1 ] && ! command -v nvidia-smi >/dev/null 2>&1 && ! ls /dev/nvidia[0-9]* >/dev/null 2>&1; then
    fail_now 3 "no CUDA here: no NVIDIA driver (no nvidia-smi on PATH, no /dev/nvidia*); run this on a GPU machine"
fi
command -v "$PYTHON" >/dev/null 2>&1 || fail_now 4 "no Python interpreter '$PYTHON' (set PYTHON=...)"
missing=$("$PYTHON" - <<'EOF' 2>>"$LOG"
import importlib.util
need = ["torch", "numpy", "pytest", "hypothesis", "matplotlib"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
EOF
) || fail_now 4 "$PYTHON does not run"
[ -z "$missing" ] || fail_now 4 "missing Python modules: $missing (install them; this check never uses the network)"
[ "$DRY" = 1 ] && cuda="ok (dry run: the CPU)" || cuda=$(timeout 120 "$PYTHON" -c '
import torch
if torch.cuda.is_available():
    print("ok", torch.cuda.get_device_name(0))
else:
    print("no", torch.__version__, torch.version.cuda or "none")
' 2>>"$LOG") || fail_now 3 "no CUDA here: importing torch failed (see $LOG)"
case "$cuda" in
    ok*) say "GPU: ${cuda#ok }" ;;
    *) set -- $cuda
       fail_now 3 "no CUDA here: torch $2 (built for CUDA $3) sees no GPU (torch.cuda.is_available() is False)" ;;
esac
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    nvidia-smi 2>&1 || true
    "$PYTHON" - <<'EOF' 2>&1
import platform, sys
import numpy, torch
print("python", sys.version.split()[0], platform.platform())
print("numpy", numpy.__version__, "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"gpu {i}: {p.name}, {p.total_memory / 2**30:.1f} GiB, capability {p.major}.{p.minor}")
print("tf32 matmul:", torch.backends.cuda.matmul.allow_tf32, "float32 matmul precision:",
      torch.get_float32_matmul_precision())
EOF
} > "$OUT/env.txt"

# ------------------------------------------------------------------- 2. install, offline
cd "$REPO"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
SHIM=$(mktemp -d)
trap 'rm -rf "$SHIM"' EXIT
if [ "$DRY" != 1 ] && timeout 120 "$PYTHON" -m pip install --no-deps --no-build-isolation --no-index -q -e . >>"$LOG" 2>&1; then
    record "install: pip install --no-deps --no-build-isolation --no-index -e . (ok)"
else
    # The repository on PYTHONPATH, and its entry points (the torch backend, `vae bench`, `vae parity`)
    # in a dist-info beside it, made from pyproject.toml, so that importlib.metadata finds them.
    "$PYTHON" - "$REPO/pyproject.toml" "$SHIM" <<'EOF' >>"$LOG" 2>&1 || true
import sys, tomllib, pathlib
project = tomllib.loads(pathlib.Path(sys.argv[1]).read_text())["project"]
info = pathlib.Path(sys.argv[2]) / f"vae_from_scratch-{project['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vae-from-scratch\nVersion: {project['version']}\n")
groups = project.get("entry-points", {})
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in eps.items()) + "\n"
    for group, eps in groups.items()))
EOF
    export PYTHONPATH="$REPO:$SHIM${PYTHONPATH:+:$PYTHONPATH}"
    if [ "$DRY" = 1 ]; then record "install: dry run, no pip: PYTHONPATH=$REPO (entry points from pyproject.toml)"
    else record "install: pip could not install offline (see log); using PYTHONPATH=$REPO (entry points from pyproject.toml)"; fi
fi
# tqdm draws progress bars only; where it is missing a silent stand-in takes its place.
if ! "$PYTHON" -c 'import tqdm' 2>/dev/null; then
    mkdir -p "$SHIM/tqdm"
    cat > "$SHIM/tqdm/__init__.py" <<'EOF'
"""A silent stand-in for tqdm (gpu_check.sh): iterates, counts nothing, prints nothing."""
class tqdm:
    def __init__(self, iterable=None, *a, **k): self.iterable = iterable
    def __iter__(self): return iter(self.iterable if self.iterable is not None else [])
    def __enter__(self): return self
    def __exit__(self, *a): return False
    def __getattr__(self, name): return lambda *a, **k: None
EOF
    echo "from . import tqdm" > "$SHIM/tqdm/auto.py"
    export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
    record "note: tqdm is not installed; a silent stand-in is used"
fi

# ------------------------------------------------------------------------------ 3. MNIST
DATA=""
FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
has_files() { for f in $FILES; do [ -e "$1/$f" ] || [ -e "$1/$f.gz" ] || return 1; done; }
for cand in ${2:-} ${VAE_DATA_DIR:-} "$REPO/data" "$REPO/../data" "$REPO/../MNIST" "$REPO/../mnist"; do
    [ -d "$cand" ] || continue
    if has_files "$cand/MNIST/raw"; then DATA=$(cd "$cand" && pwd); break; fi
    if [ "$(basename "$(cd "$cand" && pwd)")" = MNIST ] && has_files "$cand/raw"; then DATA=$(cd "$cand/.." && pwd); break; fi
    if has_files "$cand"; then                       # the files themselves: lay them out as torchvision does
        DATA="$SHIM/data"
        mkdir -p "$DATA/MNIST/raw"
        for f in $FILES; do for g in "$cand/$f" "$cand/$f.gz"; do [ -e "$g" ] && ln -sf "$(cd "$(dirname "$g")" && pwd)/$(basename "$g")" "$DATA/MNIST/raw/"; done; done
        break
    fi
done
if [ -n "$DATA" ] && timeout 120 "$PYTHON" -c "import sys; from numpy_vae.data import load_mnist; load_mnist(sys.argv[1], 'train'); load_mnist(sys.argv[1], 'test')" "$DATA" >>"$LOG" 2>&1; then
    record "data: MNIST in $DATA (checksums ok)"
else
    [ -n "$DATA" ] && record "data: MNIST files in $DATA did not load (see log); using none"
    [ -z "$DATA" ] && record "data: no MNIST found (looked in DATA_DIR, \$VAE_DATA_DIR, data/, ../data, ../MNIST, ../mnist); the benchmark uses synthetic images"
    DATA=""
fi

# --------------------------------------------------------------------------- the stages
status=0
stage() {   # name, seconds wanted, command...: runs bounded by the budget left, logs, records
    local name=$1 want=$2; shift 2
    local budget; budget=$(left)
    [ "$budget" -gt "$want" ] && budget=$want
    if [ "$budget" -lt 20 ]; then record "$name: SKIPPED (the 8-minute budget is spent)"; status=1; return; fi
    say "$name: starting (at most ${budget} s): $*"
    local t0 rc; t0=$(date +%s)
    timeout --kill-after=10 "$budget" "$@" >>"$LOG" 2>&1; rc=$?
    local dt=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then record "$name: passed in ${dt} s"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then record "$name: TIMED OUT after ${dt} s"; status=1
    else record "$name: FAILED (exit $rc) in ${dt} s; see log.txt"; status=1; fi
}

# 4. the CUDA parity tests (the whole-model and trajectory tests on device="cuda", and the rest named cuda)
stage "cuda parity tests" 200 "$PYTHON" -m pytest parity_tests -k cuda -q -rs -p no:cacheprovider \
    --junitxml="$OUT/parity.xml"
if [ -f "$OUT/parity.xml" ]; then
    echo "  parity.xml: $(grep -o '\(tests\|failures\|errors\|skipped\)="[0-9]*"' "$OUT/parity.xml" | head -4 | tr '\n' ' ')" >> "$SUMMARY"
fi

# 5. the CUDA benchmark
CUDA_FLAG=--cuda
[ "$DRY" = 1 ] && CUDA_FLAG=""
stage "cuda benchmark" 260 "$PYTHON" -m benchmarks --peers $CUDA_FLAG "${BENCH_SIZES[@]}" \
    --no-progress --out "$OUT" ${DATA:+--data-dir "$DATA"}
[ -f "$OUT/peers.md" ] && sed -n '/^| batch/,/^$/p' "$OUT/peers.md" >> "$SUMMARY"

# 6. vae train on the GPU, briefly
if [ -n "$DATA" ]; then
    RUNS=$(mktemp -d)
    stage "vae train --backend torch --device $DEVICE" 90 bash -c 'set -o pipefail; "$@" 2>&1 | tee "'"$OUT/train.txt"'"' \
        train "$PYTHON" -m numpy_vae.cli train --backend torch --device "$DEVICE" "${TRAIN_SIZES[@]}" \
        --data-dir "$DATA" --runs-dir "$RUNS" --name gpu-check --no-progress --no-figures
    rm -rf "$RUNS"
else
    record "vae train --backend torch --device cuda: skipped (no MNIST)"
fi

total=$(( $(date +%s) - START ))
if [ $status -eq 0 ]; then record "verdict: every stage passed in ${total} s"
else record "verdict: a stage failed or was cut short (${total} s); see log.txt"; fi
exit $status
