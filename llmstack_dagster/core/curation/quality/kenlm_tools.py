"""Locating and running KenLM's ``lmplz`` and ``build_binary`` command-line tools."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def find_kenlm_binary(name: str) -> str:
    """``name`` next to the running Python (the venv's bin) or on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"KenLM's {name!r} was found neither next to {sys.executable} nor on PATH; "
            "build it with `bash scripts/setup.sh`"
        )
    return found


def run_lmplz(
    tokenized_lines: Iterable[str],
    arpa_path: Path,
    order: int,
    memory: str,
    discount_fallback: bool,
    temp_dir: Path,
) -> None:
    """Estimate a modified Kneser-Ney ARPA model from tokenized lines streamed to lmplz."""
    cmd = [find_kenlm_binary("lmplz"), "-o", str(order), "-S", memory, "-T", str(temp_dir)]
    cmd += ["--arpa", str(arpa_path)] + (["--discount_fallback"] if discount_fallback else [])
    log_path = temp_dir / "lmplz.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=log)
        assert proc.stdin is not None
        try:
            for line in tokenized_lines:
                proc.stdin.write(line.encode() + b"\n")
        except BrokenPipeError:
            pass
        proc.stdin.close()
        code = proc.wait()
    if code != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"lmplz failed with exit code {code}:\n{tail}")


def build_binary(arpa_path: Path, binary_path: Path) -> None:
    """Convert an ARPA file to KenLM's binary (probing hash tables)."""
    result = subprocess.run(
        [find_kenlm_binary("build_binary"), str(arpa_path), str(binary_path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"build_binary failed: {result.stderr[-2000:]}")


def arpa_ngram_counts(arpa_path: Path) -> dict[int, int]:
    """The n-gram counts from an ARPA header (``ngram 3=1234``)."""
    counts: dict[int, int] = {}
    with open(arpa_path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = re.match(r"ngram (\d+)=(\d+)", line)
            if match:
                counts[int(match.group(1))] = int(match.group(2))
            elif line.startswith("\\1-grams:"):
                break
    return counts
