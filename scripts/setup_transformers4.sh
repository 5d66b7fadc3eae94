#!/usr/bin/env bash
# Install a transformers 4.x release into a plain folder that shadows the venv's transformers 5
# when put first on PYTHONPATH; tests/core/training/test_hf_export_transformers4.py loads our
# HF export with it.
#
#   scripts/setup_transformers4.sh [VERSION [TARGET]]     # default 4.57.6, .venv/transformers4/VERSION
#   PYTHONPATH=.venv/transformers4/4.57.6 .venv/bin/python -c "import transformers"
#
# Only transformers, tokenizers and huggingface_hub go into the folder (--no-deps): torch,
# safetensors, numpy, requests and the rest come from the venv. Each transformers release
# needs a tokenizers release from its own range, pinned below (TOKENIZERS4_VERSION overrides).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${1:-4.57.6}"
target="${2:-$root/.venv/transformers4/$version}"
python="${PYTHON:-$root/.venv/bin/python}"
hub_version="${HF_HUB4_VERSION:-0.36.2}"  # the last huggingface_hub below 1.0

case "$version" in
    4.45.* | 4.46.* | 4.47.*) default_tokenizers=0.20.3 ;;
    4.48.* | 4.49.* | 4.50.* | 4.51.*) default_tokenizers=0.21.4 ;;
    4.5[2-5].*) default_tokenizers=0.21.4 ;;
    4.56.* | 4.57.*) default_tokenizers=0.22.2 ;;
    *) default_tokenizers="" ;;
esac
tokenizers_version="${TOKENIZERS4_VERSION:-$default_tokenizers}"
if [[ -z "$tokenizers_version" ]]; then
    echo "no tokenizers pin known for transformers $version; set TOKENIZERS4_VERSION" >&2
    exit 2
fi

staging="$target.partial.$$"
trap 'rm -rf "$staging"' EXIT
rm -rf "$staging"
mkdir -p "$(dirname "$target")"
"$python" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
    --target "$staging" \
    "transformers==$version" \
    "tokenizers==$tokenizers_version" \
    "huggingface_hub==$hub_version"
rm -rf "$staging/bin"  # console scripts; not needed
echo "$version" > "$staging/TRANSFORMERS_VERSION"  # written last: marks a finished install
rm -rf "$target"
mv -T "$staging" "$target"
echo "transformers $version (tokenizers $tokenizers_version) installed in $target"
