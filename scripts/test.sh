#!/usr/bin/env bash
# The full test suite, from a fresh machine: installs what it needs, fetches the real model
# (SmolLM2-135M-Instruct Q4_1), converts it to a Hugging Face checkpoint with the reference
# converter, then runs every tier: unit tests, the GGUF fuzz tests, and the golden tests
# against transformers on the CPU backend and on wgpu (Vulkan; lavapipe without a GPU), then
# the browser tier (scripts/test-web.sh: the wasm package in headless Chromium on WebGPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh
ANYTUNE_MODEL="$(scripts/fetch-model.sh "$ANYTUNE_CACHE/models")"
export ANYTUNE_MODEL
ref="${ANYTUNE_REFERENCE:-$(pwd)/../shared/reference}"
export ANYTUNE_REFERENCE="$ref"
ANYTUNE_HF_MODEL="$(scripts/hf-model.sh)"
export ANYTUNE_HF_MODEL
export ANYTUNE_REQUIRE_WGPU="${ANYTUNE_REQUIRE_WGPU-1}"
status=0
cargo test --release --no-fail-fast "$@" || status=$?
# The browser tier: the wasm package in headless Chromium on WebGPU (skip: ANYTUNE_SKIP_WEB=1).
if [ "${ANYTUNE_SKIP_WEB:-0}" != 1 ]; then
  scripts/test-web.sh || status=$?
fi
exit "$status"
