#!/usr/bin/env bash
# Installs what the tests need, idempotently: Mesa's lavapipe Vulkan driver when no Vulkan
# driver is present (the wgpu test tier runs on it), and a Python venv with llama.cpp's `gguf`
# package for the reference GGUF -> safetensors converter.
set -euo pipefail
source "$(dirname "$0")/env.sh"
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
  echo "setup: installing Mesa Vulkan drivers (lavapipe)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
py="$ANYTUNE_CACHE/pyenv/bin/python"
if ! "$py" -c 'import gguf, safetensors, numpy' 2>/dev/null; then
  echo "setup: creating $ANYTUNE_CACHE/pyenv (gguf, safetensors, numpy)" >&2
  python3 -m venv "$ANYTUNE_CACHE/pyenv"
  "$ANYTUNE_CACHE/pyenv/bin/pip" install -q gguf==0.19.0 safetensors==0.8.0 numpy
fi
