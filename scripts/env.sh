# Sourced by the other scripts: one persistent cache outside the clone for the build, the
# model and the Python tools, so CI on a reused machine does not rebuild burn (10-60 min).
export ANYTUNE_CACHE="${ANYTUNE_CACHE:-$HOME/.cache/anytune}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ANYTUNE_CACHE/target}"
# llvmpipe compiles every kernel variant it autotunes; the minimal level keeps first calls short.
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
mkdir -p "$ANYTUNE_CACHE"
