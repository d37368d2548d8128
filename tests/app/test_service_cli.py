"""``vggish serve``: options become settings; missing weights stop it with one line."""

from __future__ import annotations

import argparse
import os
import pickle
from typing import Any

import pytest
import torch

from vggish.cli import build_parser, serve_cmd
from vggish_app import main
from vggish_app.config import Settings


def parse(*argv: str) -> argparse.Namespace:
    return build_parser(["serve"]).parse_args(["serve", *argv])


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No VGGISH_* variable of the developer's shell leaks into these tests."""
    names = ("HOST", "PORT", "WEIGHTS", "WORKERS", "DOWNLOAD")
    names += ("DEVICE", "BACKEND", "PRECISION", "NUM_THREADS", "TUNE")
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


def _served(monkeypatch: pytest.MonkeyPatch, *argv: str) -> Settings:
    """Runs ``vggish serve ARGV`` up to the point of serving; returns the settings it serves."""
    served: list[Settings] = []
    monkeypatch.setattr(main, "serve", lambda settings: served.append(settings) or True)
    environment = dict(os.environ)
    assert serve_cmd.run(parse(*argv)) == 0
    assert dict(os.environ) == environment  # nothing is passed through the environment
    (settings,) = served
    return settings


def test_options_reach_the_app_factory_and_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VGGISH_PORT", "9999")  # the environment's defaults, the flags' overrides
    monkeypatch.setenv("VGGISH_MAX_INPUTS", "7")
    settings = _served(
        monkeypatch, "--weights", "random", "--host", "127.0.0.1", "--port", "9123", "--workers", "2"
    )
    assert (settings.host, settings.port, settings.workers, settings.max_inputs) == ("127.0.0.1", 9123, 2, 7)
    config = main.uvicorn_config(settings)
    assert (config.host, config.port, config.workers, config.factory) == ("127.0.0.1", 9123, 2, True)
    assert config.app.func is main.create_app and config.app.args == (settings,)
    assert pickle.loads(pickle.dumps(config.app)).args == (settings,)  # reaches worker processes


def test_runtime_options_reach_the_service_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _served(
        monkeypatch, "--weights", "random", "--backend", "torch", "--precision", "bf16", "--threads", "1"
    )
    assert (settings.backend, settings.precision, settings.num_threads) == ("torch", "bf16", 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_a_gpu_stops_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main, "serve", lambda settings: pytest.fail("must not start"))
    with pytest.raises(ValueError, match="sees no CUDA GPU") as error:
        serve_cmd.run(parse("--weights", "random", "--device", "cuda"))
    assert "\n" not in str(error.value) and "device='cpu'" in str(error.value)
