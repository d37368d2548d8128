"""``benchmarks/run_all.py`` runs and prints one table of positive figures.

Speed itself is never asserted here (benchmarks measure it); these tests check that the run
finishes, that the table and the JSON hold the expected rows, and that a missing optional
dependency gives a "not installed" row instead of a failure.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def common() -> Any:
    """``benchmarks/_common.py`` as a module (the benchmarks import each other by file name)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("_common")
    finally:
        sys.path.remove(str(BENCHMARKS))


OLD_PAGE = """# Benchmarks

old intro

## Machine

- run: 2026-01-01, full sizes, 90 min
- CPU X, load average 1.00

## End to end

e2e text

| case | result | notes |
|---|---:|---|
| one | 1.00 s | kept |

## Start-up

startup text

| case | result | notes |
|---|---:|---|
| two | 2.00 s | kept |
"""


def test_updated_page_rewrites_its_sections_and_keeps_the_others() -> None:
    c = common()
    rows = [
        c.Row("machine", "CPU", "not on the page"),
        c.Row("fad", "vggish fad", 3.0, "s", "n1", ratio=2.0),
        c.Row("end-to-end", "new", 5.0, "s", "n2"),
    ]
    first = c.updated_page(OLD_PAGE, rows, "CPU Y, load average 7.00", "2026-02-02, --short sizes, 5 min")
    blocks = first.split("\n## ")
    titles = [b.split("\n", 1)[0] for b in blocks[1:]]
    assert titles == ["Machine", "End to end", "Start-up", "Fréchet Audio Distance"]  # the page's order
    assert "| two | 2.00 s | kept |\n" in first  # Start-up untouched
    assert "| one | 1.00 s | kept |" not in first and "| new | 5.00 s | n2 |" in first
    assert "| vggish fad | 3.00 s | 2.00× | n1 |" in first
    assert "- run: 2026-01-01, full sizes, 90 min\n- CPU X, load average 1.00\n" in first
    line = "- separate run of End to end, Fréchet Audio Distance: 2026-02-02, --short sizes, 5 min; CPU Y"
    assert line in first
    assert "not on the page" not in first
    # a later run of one of them adds its own line; the earlier one, covering more, stays
    again = c.updated_page(first, rows[1:2], "CPU Z, load average 2.00", "2026-03-03, --short sizes, 1 min")
    assert line in again
    assert "- separate run of Fréchet Audio Distance: 2026-03-03, --short sizes, 1 min; CPU Z" in again
    # the same sections again: the line it supersedes goes
    third = c.updated_page(again, rows[1:2], "CPU W, load average 3.00", "2026-04-04, --short sizes, 1 min")
    assert "2026-03-03" not in third and "- separate run of Fréchet Audio Distance: 2026-04-04" in third
    assert third.count("## Fréchet Audio Distance") == 1


@pytest.mark.slow
def test_only_with_a_page_updates_that_section_in_place(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(OLD_PAGE)
    done = run_all(tmp_path, "--only", "resample", "--page", str(page))
    assert done.returncode == 0, done.stderr[-3000:]
    text = page.read_text()
    assert "| two | 2.00 s | kept |" in text and "| one | 1.00 s | kept |" in text
    assert "## Resampling to 16 kHz" in text
    assert "- separate run of Resampling to 16 kHz: " in text
    assert text.index("## End to end") < text.index("## Resampling") < text.index("## Start-up")


@pytest.mark.slow
def test_fad_section_without_the_peer_says_how_to_install_it() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        bench_fad = importlib.import_module("bench_fad")
    finally:
        sys.path.remove(str(BENCHMARKS))
    rows = bench_fad.run(0.5, 1, (0,), peer_python=None)
    by_name = {r.name: r for r in rows}
    assert by_name["frechet-audio-distance 0.3.4"].value == "not installed: make bench-peers"
    for name in ("vggish fad, default mode, --workers 0", "vggish fad --compat google (twice the examples)"):
        row = by_name[name]
        assert row.unit == "s" and row.value > 0 and row.ratio is None
        fad = float(re.match(r"FAD ([0-9.]+);", row.note).group(1))  # type: ignore[union-attr]
        assert fad > 0 and "make bench-peers" in row.note


@pytest.mark.slow
def test_search_section_embedded_store_is_exact() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        bench_search = importlib.import_module("bench_search")
    finally:
        sys.path.remove(str(BENCHMARKS))
    rows = bench_search.run(bench_search.Data(items=300, queries=10, clusters=20), 1, ("embedded",))
    searches = [r for r in rows if r.unit == "ms"]
    assert len(searches) == 2
    for row in searches:
        assert row.value > 0 and row.ratio == 1.0
        assert "recall@10 1.000" in row.note  # exact search against NumPy's float64 top 10
    audio = {r.name: r for r in rows if r.name.startswith("POST")}
    assert len(audio) == 2 and all(r.value > 0 for r in audio.values())
