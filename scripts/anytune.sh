#!/usr/bin/env bash
# Runs the anytune CLI from a fresh machine: fetches the demo model if needed, builds the
# release binary (cached in $CARGO_TARGET_DIR), then passes every argument through.
#   scripts/anytune.sh generate --prompt "What is the capital of France?"
#   scripts/anytune.sh chat
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
if [ -z "${ANYTUNE_MODEL:-}" ]; then
  ANYTUNE_MODEL="$(scripts/fetch-model.sh)"
  export ANYTUNE_MODEL
fi
cargo build --release --quiet
exec "$CARGO_TARGET_DIR/release/anytune" "$@"
