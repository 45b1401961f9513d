# Sourced by the other scripts: one persistent cache outside the clone for the build, the
# model and the Python tools, so CI on a reused machine does not rebuild burn (10-60 min).
export ANYTUNE_CACHE="${ANYTUNE_CACHE:-$HOME/.cache/anytune}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ANYTUNE_CACHE/target}"
# llvmpipe compiles every kernel variant it autotunes; the minimal level keeps first calls short.
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
mkdir -p "$ANYTUNE_CACHE"
# Mesa's Vulkan loader warns on every start without a runtime dir; give it one.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="$ANYTUNE_CACHE/xdg-runtime"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
