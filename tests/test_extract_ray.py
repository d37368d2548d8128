"""``--engine ray``: a local Ray Data pipeline gives the local engine's rows and failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_extract import EMBEDDING_TOLERANCE, make_corpus, read_rows

from vggish.extract import ExtractOptions, extract, find_inputs

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")]


def test_ray_rows_equal_local_rows(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    corpus = make_corpus(tmp_path / "corpus", bad=True)
    inputs = find_inputs([str(corpus)])
    local = extract(inputs, tmp_path / "local", "random", ExtractOptions(backend="torch", workers=0))
    options = ExtractOptions(backend="torch", engine="ray", workers=1, rows_per_part=10)
    summary = extract(inputs, tmp_path / "ray", "random", options)
    assert (summary.files_ok, summary.files_failed) == (local.files_ok, local.files_failed) == (6, 3)
    mine, ref = read_rows(tmp_path / "ray"), read_rows(tmp_path / "local")
    assert not mine.duplicated(["path", "index"]).any()
    for column in ("path", "index", "start", "end"):
        assert mine[column].tolist() == ref[column].tolist()
    np.testing.assert_allclose(
        np.stack(mine["embedding"]),
        np.stack(ref["embedding"]),
        rtol=EMBEDDING_TOLERANCE,
        atol=EMBEDDING_TOLERANCE,
    )
    post = np.stack(mine["postprocessed"]).astype(int) - np.stack(ref["postprocessed"])
    assert np.abs(post).max() <= 1

    def failed(out: str) -> list[str]:
        lines = (tmp_path / out / "_failures.jsonl").read_text().splitlines()
        return sorted(json.loads(line)["path"] for line in lines)

    assert failed("ray") == failed("local")
    again = extract(inputs, tmp_path / "ray", "random", options)  # resumes: nothing left but failures
    assert (again.files_skipped, again.files_ok) == (6, 0)
