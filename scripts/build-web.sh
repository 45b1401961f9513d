#!/usr/bin/env bash
# Builds the browser package into web/pkg/: the crate for wasm32-unknown-unknown (release),
# then wasm-bindgen (--target web). The wasm-bindgen CLI must be exactly the wasm-bindgen crate
# version in Cargo.lock; it is installed from crates.io when missing (no binary downloads).
# wasm-opt runs only when a working one is on PATH (binaryen >= 116; Debian's 108 breaks the
# module) — stripping names gives almost the same compressed size.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown
ver="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)"
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $ver"; then
  echo "installing wasm-bindgen-cli $ver (once; ~10 min)" >&2
  cargo install --quiet wasm-bindgen-cli --version "$ver"
fi
cargo build --release --quiet --lib --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir web/pkg --out-name anytune \
  --remove-name-section --remove-producers-section \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/anytune.wasm"
if command -v wasm-opt >/dev/null; then
  bver="$(wasm-opt --version | grep -oE '[0-9]+' | head -1)"
  if [ "${bver:-0}" -ge 116 ]; then
    wasm-opt -O2 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-reference-types --enable-multivalue web/pkg/anytune_bg.wasm -o web/pkg/anytune_bg.wasm
  else
    echo "note: wasm-opt $bver is too old (needs binaryen >= 116); skipped" >&2
  fi
fi
ls -l web/pkg/anytune_bg.wasm >&2
