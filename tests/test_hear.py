"""vggish.hear: the official HEAR validator passes, and the numbers are the library's own.

The validator is the ``hearvalidator`` package's command-line tool (``hear-validator``), run on
``vggish.hear`` with random weights in a child process, as HEAR's organisers ran it. The other
tests compare each output with ``runtime.embed`` on the same sound (the library's public path,
one sound at a time, NumPy front end) and count the model calls.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vggish
from vggish import hear

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
VALIDATOR_INSTALL = "pip install --no-deps --ignore-requires-python hearvalidator==2021.0.6"


def white_noise(n_sounds: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """(n_sounds, samples) uniform noise in [-1, 1), float32, as the validator makes it."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((n_sounds, int(seconds * RATE)), generator=gen) * 2 - 1


def close(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal to 1e-5 of the embeddings' scale (batch composition may change summation order)."""
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * max(1.0, float(np.abs(expected).max())))


def library(model: vggish.Runtime, sound: torch.Tensor, hop: float) -> vggish.EmbeddingResult:
    return model.embed(sound.numpy(), RATE, hop_seconds=hop, pad=True, postprocess=False)


def validator() -> str:
    beside = Path(sys.executable).with_name("hear-validator")
    found = str(beside) if beside.is_file() else shutil.which("hear-validator")
    assert found, f"hear-validator is not installed: {VALIDATOR_INSTALL}"
    return found


@pytest.mark.slow
@pytest.mark.tensorflow  # the validator imports TensorFlow, whatever the module validated
def test_the_official_validator_passes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGGISH_")}
    env.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path))  # HOME: the ONNX graph's cache goes there
    done = subprocess.run(
        [validator(), "vggish.hear", "--model", "random"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "Looks good!" in done.stdout
    assert "Max interval between timestamps is 50.0ms" in done.stdout  # HEAR's ≤ 50 ms
    assert "Received embedding of shape: (4, 128)" in done.stdout  # scene embeddings


def test_model_is_what_hear_expects(random_model: vggish.Runtime) -> None:
    model = hear.HearModel(random_model)
    assert isinstance(model, torch.nn.Module)
    sizes = (model.sample_rate, model.scene_embedding_size, model.timestamp_embedding_size)
    assert sizes == (16000, 128, 128) and all(type(v) is int for v in sizes)
    assert (model.hop_seconds, model.scene_hop_seconds) == (0.05, 0.96)
    assert set(model.state_dict()) == {f"network.{k}" for k in random_model.network.state_dict()}


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [1.07, 2.5])
def test_timestamp_embeddings_equal_the_library(random_model: vggish.Runtime, seconds: float) -> None:
    model = hear.HearModel(random_model)
    audio = white_noise(3, seconds)
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    assert embeddings.dtype == timestamps.dtype == torch.float32
    for i, sound in enumerate(audio):
        expected = library(random_model, sound, 0.05)
        assert embeddings.shape[1] == len(expected.embeddings) == timestamps.shape[1]
        close(embeddings[i].numpy(), expected.embeddings)
        centres_ms = expected.timestamps.mean(axis=1) * 1000  # (start + end) / 2 of each example
        np.testing.assert_allclose(timestamps[i].numpy(), centres_ms, rtol=0, atol=1e-9)
    assert timestamps[0, 0] == 487.5 and torch.all(timestamps[:, 1:] - timestamps[:, :-1] == 50.0)


def test_scene_embedding_is_the_mean_at_the_reference_hop(random_model: vggish.Runtime) -> None:
    model = hear.HearModel(random_model)
    audio = white_noise(4, 5.0, seed=1)
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (4, 128) and scene.dtype == torch.float32
    coarse = hear.HearModel(random_model, hop_seconds=0.96)
    frames, _ = hear.get_timestamp_embeddings(audio, coarse)
    assert frames.shape[1] == 5
    np.testing.assert_allclose(scene.numpy(), frames.double().mean(dim=1).numpy(), rtol=0, atol=1e-6)
    for i, sound in enumerate(audio):
        close(scene[i].numpy(), library(random_model, sound, 0.96).embeddings.mean(axis=0))


@pytest.mark.slow
def test_sounds_share_full_batches(random_model: vggish.Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    infer = random_model.infer

    def counting(examples: np.ndarray | torch.Tensor) -> np.ndarray:
        calls.append(int(examples.shape[0]))
        return infer(examples)

    monkeypatch.setattr(random_model, "infer", counting)
    model = hear.HearModel(random_model, batch_size=32)
    embeddings, _ = hear.get_timestamp_embeddings(white_noise(5, 1.98), model)
    assert embeddings.shape == (5, 21, 128)  # 105 examples: 3 full batches and the rest
    assert calls == [32, 32, 32, 9]


def test_short_sounds_are_padded_to_one_example(random_model: vggish.Runtime) -> None:
    model = hear.HearModel(random_model)
    audio = white_noise(2, 0.5, seed=2)
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    assert embeddings.shape == (2, 1, 128) and timestamps.tolist() == [[487.5], [487.5]]
    close(embeddings[1].numpy(), library(random_model, audio[1], 0.05).embeddings)
    close(hear.get_scene_embeddings(audio, model)[1].numpy(), embeddings[1, 0].numpy())


def test_the_hop_is_a_choice(random_model: vggish.Runtime) -> None:
    model = hear.HearModel(random_model, hop_seconds=0.25)
    audio = white_noise(1, 3.0, seed=3)
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    assert timestamps.tolist() == [[487.5, 737.5, 987.5, 1237.5, 1487.5, 1737.5, 1987.5, 2237.5, 2487.5]]
    close(embeddings[0].numpy(), library(random_model, audio[0], 0.25).embeddings)
    with pytest.raises(ValueError, match=r"multiple of 0\.01"):
        hear.HearModel(random_model, hop_seconds=0.055)
    with pytest.raises(ValueError, match="batch_size"):
        hear.HearModel(random_model, batch_size=0)


def test_frame_centres_stay_exact_over_hours() -> None:
    centres = hear.frame_centres_ms(3 * 3600 * 20, 0.05)  # 3 hours at 50 ms
    assert centres[-1] == (3 * 3600 * 20 - 1) * 50 + 487.5
    assert np.array_equal(np.diff(centres), np.full(centres.size - 1, 50.0))


def test_load_model_passes_options_on(monkeypatch: pytest.MonkeyPatch, random_model: vggish.Runtime) -> None:
    seen: list[tuple[object, dict[str, object]]] = []

    def fake(weights: object, **options: object) -> vggish.Runtime:
        seen.append((weights, options))
        return random_model

    monkeypatch.setattr(hear, "load_runtime", fake)
    model = hear.load_model()
    assert model.runtime is random_model and model.hop_seconds == 0.05
    model = hear.load_model("w.safetensors", hop_seconds=0.96, device="cpu", backend="torch")
    assert model.hop_seconds == 0.96
    # "": the official weights (None); a path as it is; runtime options passed on
    assert seen == [(None, {}), ("w.safetensors", {"device": "cpu", "backend": "torch"})]


@pytest.mark.slow
def test_random_weights_load() -> None:
    with pytest.warns(UserWarning, match="RANDOM"):
        model = hear.load_model("random", backend="torch", hop_seconds=0.96)
    embeddings, _ = hear.get_timestamp_embeddings(white_noise(1, 2.0), model)
    assert embeddings.shape == (1, 2, 128) and bool(torch.isfinite(embeddings).all())


@pytest.mark.parametrize(
    "audio",
    [torch.zeros(16000), torch.zeros((1, 16000), dtype=torch.int16), np.zeros((1, 16000), np.float32)],
    ids=["1-D", "int16", "numpy"],
)
def test_what_hear_never_sends_is_refused(random_model: vggish.Runtime, audio: object) -> None:
    with pytest.raises(ValueError, match=r"\(n_sounds, n_samples\)"):
        hear.get_timestamp_embeddings(audio, hear.HearModel(random_model))  # type: ignore[arg-type]


def test_nan_is_refused(random_model: vggish.Runtime) -> None:
    audio = white_noise(2, 1.0)
    audio[1, 100] = float("nan")
    with pytest.raises(ValueError, match=r"NaN|finite"):
        hear.get_scene_embeddings(audio, hear.HearModel(random_model))


class _CpuOnly:
    """Stands in for ONNX Runtime: a backend that computes on the CPU only."""

    name = "onnx"

    def __call__(self, examples: object) -> np.ndarray:
        raise AssertionError("not called")


def test_moving_off_the_cpu_leaves_onnx_runtime(random_model: vggish.Runtime) -> None:
    network = copy.deepcopy(random_model.network)
    model = hear.HearModel(vggish.Runtime(network, _CpuOnly(), weights_info={"sha256": "x"}))
    assert model.runtime.backend == "onnx"
    model.to("cpu")
    assert model.runtime.backend == "onnx"  # stays: ONNX Runtime is the CPU's fastest
    model.to("meta")  # any device but the CPU, as a GPU would be
    assert model.runtime.backend == "torch" and model.device.type == "meta"
    assert model.runtime.network is network and model.runtime.weights_info == {"sha256": "x"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_as_hear_runs_it(random_model: vggish.Runtime) -> None:
    model = hear.HearModel(vggish.Runtime(copy.deepcopy(random_model.network))).to("cuda")
    audio = white_noise(3, 2.0)
    embeddings, timestamps = hear.get_timestamp_embeddings(audio.cuda(), model)
    scene = hear.get_scene_embeddings(audio.cuda(), model)
    assert embeddings.device.type == timestamps.device.type == scene.device.type == "cuda"
    for i, sound in enumerate(audio):  # cuDNN may use TF32: close, not equal
        expected = library(random_model, sound, 0.05).embeddings
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(embeddings[i].cpu().numpy(), expected, rtol=0, atol=5e-3 * scale)
