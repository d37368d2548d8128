"""``benchmarks/run_all.py`` runs and prints one table of positive figures.

Speed itself is never asserted here (benchmarks measure it); these tests check that the run
finishes, that the table and the JSON hold the expected rows, and that a missing optional
dependency gives a "not installed" row instead of a failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
# sections cheap enough for a test: a few seconds in all with --quick
CHEAP = ("machine", "resample")
EXPECTED = {
    ("machine", "cores usable"): "cores",
    ("machine", "float32 GEMM"): "GFLOP/s",
    ("machine", "model ceiling"): "examples/s",
    ("resample", "vggish reference, 44.1 kHz"): "s",
    ("resample", "vggish reference, 48 kHz"): "s",
    ("resample", "vggish fast (soxr VHQ), 44.1 kHz"): "s",
    ("resample", "vggish fast (soxr VHQ), 48 kHz"): "s",
}


def run_all(tmp_path: Path, *args: str, python_prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``run_all.py --quick ARGS`` in a fresh process, after ``python_prelude`` runs there."""
    code = (
        f"import runpy, sys\n{python_prelude}\n"
        f"sys.path.insert(0, {str(BENCHMARKS)!r})\n"
        f"sys.argv = ['run_all.py', '--quick', *{list(args)!r}]\n"
        f"runpy.run_path({str(BENCHMARKS / 'run_all.py')!r}, run_name='__main__')\n"
    )
    env = {**os.environ, "VGGISH_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def table_rows(stdout: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(section, what) -> (result, unit) for every row of the markdown table."""
    rows = {}
    for line in stdout.splitlines():
        if not line.startswith("| ") or line.startswith("| section "):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == 6, line
        rows[cells[0], cells[1]] = (cells[2], cells[3])
    return rows


@pytest.mark.slow
def test_quick_run_prints_one_table_of_positive_figures(tmp_path: Path) -> None:
    rows_json = tmp_path / "rows.json"
    done = run_all(tmp_path, "--only", *CHEAP, "--json", str(rows_json))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("# vggish benchmarks")
    assert "section 1/2: machine" in done.stderr  # progress goes to stderr
    rows = table_rows(done.stdout)
    assert {section for section, _ in rows} == set(CHEAP)
    for key, unit in EXPECTED.items():
        result, printed_unit = rows[key]
        assert printed_unit == unit, key
        assert float(result) > 0, key
    data = json.loads(rows_json.read_text())
    assert len(data["rows"]) == len(rows)
    values = {(r["section"], r["name"]): r["value"] for r in data["rows"]}
    gemm = values["machine", "float32 GEMM"]
    assert values["machine", "model ceiling"] == pytest.approx(gemm / 1.73)


@pytest.mark.slow
def test_a_missing_optional_dependency_gives_a_row_not_a_failure(tmp_path: Path) -> None:
    hide = "sys.modules['resampy'] = None  # import resampy now fails, as when not installed"
    done = run_all(tmp_path, "--only", "resample", python_prelude=hide)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    result, _ = rows["resample", "resampy 0.4.3 kaiser_best"]
    assert result == "not installed: pip install -e '.[bench]'"
    assert float(rows["resample", "vggish reference, 44.1 kHz"][0]) > 0


@pytest.mark.slow
def test_hear_section_times_each_hop(tmp_path: Path) -> None:
    done = run_all(tmp_path, "--only", "hear")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    for hop_ms in (960, 250, 50):
        result, unit = rows["hear", f"timestamp embeddings, hop {hop_ms} ms"]
        assert unit == "s" and float(result) > 0
    assert float(rows["hear", "scene embeddings (mean at 960 ms)"][0]) > 0
    assert rows["hear", "CPU flags"][0]  # the SIMD flags, or "unknown"
