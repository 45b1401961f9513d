#!/usr/bin/env bash
# Speed and memory against the PyTorch + PEFT reference, in one invocation on this machine:
# our training (batch 4, LoRA r 8 on all seven projections, the shared Debian dataset) and
# greedy generation, then ../shared/reference/peft/bench_speed.py, side by side with ratios.
# The reference side needs a Python with torch + transformers + peft: ANYTUNE_TORCH_PYTHON, or
# the venv that `scripts/bench.sh --install-reference` builds from the reference's lock file
# (~4.6 GB, PyPI only). Without it the table says the reference was skipped.
#   scripts/bench.sh [--install-reference] [anytune bench flags, e.g. --device vulkan --json docs/bench/x.json]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ref="${ANYTUNE_REFERENCE:-$(pwd)/../shared/reference}"
export ANYTUNE_REFERENCE="$ref"
venv="$ANYTUNE_CACHE/torchenv"
if [ "${1:-}" = "--install-reference" ]; then
  shift
  if ! "$venv/bin/python" -c 'import torch, transformers, peft' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --no-deps -r "$ref/peft/requirements-cpu-nodeps.txt"
  fi
fi
if [ -z "${ANYTUNE_TORCH_PYTHON:-}" ] && [ -x "$venv/bin/python" ]; then
  export ANYTUNE_TORCH_PYTHON="$venv/bin/python"
fi
scripts/setup.sh
ANYTUNE_MODEL="$(scripts/fetch-model.sh "$ANYTUNE_CACHE/models")"
export ANYTUNE_MODEL
ANYTUNE_HF_MODEL="$(scripts/hf-model.sh)"
export ANYTUNE_HF_MODEL
# Two busy threads each: PyTorch's OpenMP spin-waits steal the other side's cores otherwise.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
cargo build --release --quiet
exec "$CARGO_TARGET_DIR/release/anytune" bench --reference "$ref" "$@"
