#!/usr/bin/env bash
# Prints the path of the demo model as a Hugging Face float32 checkpoint, writing it once with
# the reference converter (../shared/reference/gguf_to_safetensors.py) into the cache.
# Needs ANYTUNE_MODEL (the GGUF) and ANYTUNE_REFERENCE; run scripts/setup.sh first (its venv).
set -euo pipefail
source "$(dirname "$0")/env.sh"
hf="$ANYTUNE_CACHE/models/smollm2-135m-hf"
if [ ! -f "$hf/model.safetensors" ]; then
  echo "converting the GGUF to a Hugging Face checkpoint (reference converter)" >&2
  rm -rf "$hf.tmp"
  "$ANYTUNE_CACHE/pyenv/bin/python" "$ANYTUNE_REFERENCE/gguf_to_safetensors.py" --gguf "$ANYTUNE_MODEL" \
    --meta "$ANYTUNE_REFERENCE/smollm2-135m-hf-meta" --out "$hf.tmp" >&2
  mv "$hf.tmp" "$hf"
fi
echo "$hf"
