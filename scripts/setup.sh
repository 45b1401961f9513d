#!/usr/bin/env bash
# Installs what the tests need, idempotently: Mesa's lavapipe Vulkan driver when no Vulkan
# driver is present (the wgpu test tier runs on it), a Python venv with llama.cpp's `gguf`
# package for the reference GGUF -> safetensors converter, and for the browser tier Debian's
# chromium, Node.js/npm and the wasm32 Rust target.
set -euo pipefail
source "$(dirname "$0")/env.sh"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
  echo "setup: installing Mesa Vulkan drivers (lavapipe)" >&2
  apt_install mesa-vulkan-drivers libvulkan1
fi
if ! command -v chromium >/dev/null; then
  echo "setup: installing Debian's chromium (browser tests, WebGPU via SwiftShader)" >&2
  apt_install chromium
fi
if ! command -v npm >/dev/null; then
  echo "setup: installing Node.js and npm" >&2
  apt_install nodejs npm
fi
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown
py="$ANYTUNE_CACHE/pyenv/bin/python"
if ! "$py" -c 'import gguf, safetensors, numpy' 2>/dev/null; then
  echo "setup: creating $ANYTUNE_CACHE/pyenv (gguf, safetensors, numpy)" >&2
  python3 -m venv "$ANYTUNE_CACHE/pyenv"
  "$ANYTUNE_CACHE/pyenv/bin/pip" install -q gguf==0.19.0 safetensors==0.8.0 numpy
fi
