#!/usr/bin/env bash
# The browser tier (part of scripts/test.sh): builds the wasm package (scripts/build-web.sh) and
# the Vite demo page, then runs the Chromium tests in web/demo/tests: the tiny model trains on
# WebGPU and matches the native CLI, and `npm pack` output imports into a fresh Vite project.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh
scripts/build-web.sh
cargo build --release --quiet
cd web/demo
npm ci --no-audit --no-fund --loglevel=error
npx vite build --logLevel warn
ANYTUNE_BIN="$CARGO_TARGET_DIR/release/anytune" node --test --test-concurrency=1 tests/
