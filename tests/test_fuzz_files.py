"""Fuzz the file readers: 1,000 mutated netx / NIR / ONNX / npz files derived from real
ones (tests/fuzz_files.py) must each end in exit 0, 1 or 2 -- a neuroprune error, never
another exception or a traceback -- with bounded memory and time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = 1000
SEED = 20260


def test_a_thousand_mutated_files_give_clean_exits_in_bounded_memory_and_time(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "fuzz_files.py"), str(tmp_path), str(SEED), str(FILES)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    elapsed = time.perf_counter() - began
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps({key: value for key, value in report.items() if key != "crashes"}))
    assert report["total_files"] == FILES
    assert all(count >= FILES // 10 for count in report["files"].values()), report["files"]
    assert report["crashes"] == [], report["crashes"][:5]
    assert set(report["exits"]) <= {"0", "1", "2"}, report["exits"]
    assert int(report["exits"].get("0", 0)) > 0 and int(report["exits"].get("2", 0)) > 0  # both kinds occur
    assert report["max_rss_mib"] < 1024, report
    assert elapsed < 60, f"fuzz run took {elapsed:.1f} s"
