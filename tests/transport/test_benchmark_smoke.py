"""The transport benchmark runs end to end on a tiny budget and prints its contract: the ratio line last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_transport_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, "benchmarks/transport.py", "--n", "1500", "--rounds", "1", "--latency-n", "5",
                        "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio=") and float(lines[-1][len("ratio="):]) > 0
    assert any(line.startswith("each side alone") for line in lines)
    data = json.loads(out.read_text())
    assert data["ours_msgs_per_s"] > 0 and data["raw_msgs_per_s"] > 0 and data["latency"]["n"] == 5
    assert data["sender_alone_msgs_per_s"] > 0 and data["receiver_alone_msgs_per_s"] > 0
