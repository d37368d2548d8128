"""Output files are whole or absent, and get the permissions the umask gives (not mkstemp's 0o600)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vggish.fileio import atomic_output, write_bytes_atomic
from vggish.pipeline.driver import EmbeddingResult, write_npz
from vggish.weights.format import random_weights, save_weights


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def result() -> EmbeddingResult:
    rng = np.random.default_rng(0)
    return EmbeddingResult(
        embeddings=rng.normal(size=(2, 128)).astype(np.float32),
        timestamps=np.array([[0.0, 0.975], [0.96, 1.935]]),
        postprocessed=None,
        sample_rate=16000,
        channels=1,
        num_samples=32000,
    )


def test_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    expected = 0o666 & ~umask
    write_bytes_atomic(tmp_path / "raw.bin", b"abc")
    write_npz(tmp_path / "clip.npz", result())
    weights = random_weights()
    save_weights(tmp_path / "w.safetensors", weights.state_dict, weights.pca, weights.metadata)
    for name in ("raw.bin", "clip.npz", "w.safetensors"):
        assert mode(tmp_path / name) == expected, (name, oct(mode(tmp_path / name)), oct(expected))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npz", "raw.bin", "w.safetensors"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    def failing_writer() -> None:
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError, match="the writer failed"):
        failing_writer()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
