#!/usr/bin/env bash
# Benchmark environment with the peer libraries whose pins clash with ours (datatrove 0.10 needs
# xxhash<4, spacy, orjson) and TRL for bench/sft.py. Our package is installed into it too, so
# every benchmark compares ours and the peers side by side in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
BVENV=.bench-venv
[ -x .venv/bin/python ] || bash scripts/setup.sh
if [ ! -f "$BVENV/.complete" ] || [ pyproject.toml -nt "$BVENV/.complete" ] \
  || [ scripts/setup_bench.sh -nt "$BVENV/.complete" ]; then
  python3.11 -m venv "$BVENV"
  "$BVENV/bin/pip" install -q --upgrade pip
  "$BVENV/bin/pip" install -q "torch==2.13.0"
  "$BVENV/bin/pip" install -q "datatrove==0.10.1" spacy orjson "xxhash<4" datasketch \
    "data-selection>=1.0.3" psutil
  "$BVENV/bin/pip" install -q -e ".[dev]"
  # TRL for bench/sft.py; 1.x supports transformers 4.56+ and 5.x, so it shares ours
  "$BVENV/bin/pip" install -q "trl==1.16.0"
  # the language-ID peer for bench/language_id.py (a 96 MB wheel)
  "$BVENV/bin/pip" install -q "lingua-language-detector==2.1.1"
  # our install may have upgraded xxhash; datatrove needs <4
  "$BVENV/bin/pip" install -q "xxhash<4"
  touch "$BVENV/.complete"
fi
# bench/language_id.py's labelled texts: Debian's fortune collections in 12 languages
FORTUNES="fortunes fortunes-de fortunes-es fortunes-it fortunes-pl fortunes-ru fortunes-br \
  fortunes-cs fortunes-bg fortunes-zh fortunes-ga fortunes-eo"
if [ ! -d /usr/share/games/fortunes ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # shellcheck disable=SC2086
  { apt-get update -q && apt-get install -y -q $FORTUNES; } >/dev/null \
    || echo "fortunes not installed: bench/language_id.py will lack its labelled texts"
fi
echo "bench env ready: $BVENV"
