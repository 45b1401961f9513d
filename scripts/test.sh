#!/usr/bin/env bash
# The full test suite, from a fresh machine: installs what it needs, fetches the real model
# (SmolLM2-135M-Instruct Q4_1), converts it to a Hugging Face checkpoint with the reference
# converter, then runs every tier: unit tests, the GGUF fuzz tests, and the golden tests
# against transformers on the CPU backend and on wgpu (Vulkan; lavapipe without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh
ANYTUNE_MODEL="$(scripts/fetch-model.sh "$ANYTUNE_CACHE/models")"
export ANYTUNE_MODEL
ref="${ANYTUNE_REFERENCE:-$(pwd)/../shared/reference}"
export ANYTUNE_REFERENCE="$ref"
hf="$ANYTUNE_CACHE/models/smollm2-135m-hf"
if [ ! -f "$hf/model.safetensors" ]; then
  echo "test: converting the GGUF to a Hugging Face checkpoint (reference converter)" >&2
  rm -rf "$hf.tmp"
  "$ANYTUNE_CACHE/pyenv/bin/python" "$ref/gguf_to_safetensors.py" --gguf "$ANYTUNE_MODEL" \
    --meta "$ref/smollm2-135m-hf-meta" --out "$hf.tmp" >&2
  mv "$hf.tmp" "$hf"
fi
export ANYTUNE_HF_MODEL="$hf"
export ANYTUNE_REQUIRE_WGPU="${ANYTUNE_REQUIRE_WGPU-1}"
cargo test --release --no-fail-fast "$@"
