"""The generation benchmark runs end to end on a tiny random Llama and reports the matmul floor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_generate_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "gen.json"
    p = subprocess.run([sys.executable, "benchmarks/generate_vs_transformers.py", "--model", "tiny-llama", "--batch", "1",
                        "--new-tokens", "8", "--repeats", "1", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    row = json.loads(out.read_text())["rows"][0]
    assert row["ours_tok_s"] > 0 and row["transformers_tok_s"] > 0 and row["matmul_floor_step_s"] > 0
    assert "matmuls alone" in p.stdout
