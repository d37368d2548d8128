"""``vggish serve``: options become settings; missing weights stop it with one line."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import torch
import uvicorn

from vggish.cli import serve_cmd


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_cmd.register(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run`` writes VGGISH_* variables; monkeypatch puts them back afterwards."""
    names = ("HOST", "PORT", "WEIGHTS", "WORKERS", "DOWNLOAD")
    names += ("DEVICE", "BACKEND", "PRECISION", "NUM_THREADS")
    for name in names:
        monkeypatch.setenv(f"VGGISH_{name}", "")
        monkeypatch.delenv(f"VGGISH_{name}")


def test_missing_weights_stop_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("VGGISH_DOWNLOAD", "false")
    args = parse("--weights", str(tmp_path / "vggish.safetensors"))
    with pytest.raises(RuntimeError) as error:
        serve_cmd.run(args)
    message = str(error.value)
    assert "\n" not in message
    assert "vggish_model.ckpt" in message and "vggish_pca_params.npz" in message
    assert "VGGISH_WEIGHTS=random" in message


def test_options_reach_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: calls.append({"target": target, **kwargs}))
    assert (
        serve_cmd.run(parse("--weights", "random", "--host", "127.0.0.1", "--port", "9123", "--workers", "2"))
        == 0
    )
    (call,) = calls
    assert call["target"] == "app.main:app"
    assert (call["host"], call["port"], call["workers"]) == ("127.0.0.1", 9123, 2)


def test_runtime_options_reach_the_service_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: None)
    args = parse("--weights", "random", "--backend", "torch", "--precision", "bf16", "--threads", "1")
    assert serve_cmd.run(args) == 0
    from app.config import Settings

    settings = Settings()
    assert (settings.backend, settings.precision, settings.num_threads) == ("torch", "bf16", 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_a_gpu_stops_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: pytest.fail("must not start"))
    with pytest.raises(ValueError, match="sees no CUDA GPU") as error:
        serve_cmd.run(parse("--weights", "random", "--device", "cuda"))
    assert "\n" not in str(error.value) and "device='cpu'" in str(error.value)
