"""The PyTorch front end (the one a GPU model uses) against Google's reference arrays, the NumPy
front end, and the naive loop version in test_features.py. Runs on the CPU: no GPU here; the code
is device-agnostic (the same ops on ``cuda`` tensors)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch

import vggish
from tests.test_features import naive_log_mel
from vggish import params
from vggish.features import logmel as features
from vggish.features.logmel_torch import (
    TorchFrameStream,
    log_mel_torch,
    to_device,
    waveform_to_examples_torch,
)
from vggish.pipeline.driver import EmbedOptions, embed_source


@pytest.mark.parametrize("name", ["smoke", "noise"])
def test_examples_match_reference_arrays(reference: dict[str, np.ndarray], name: str) -> None:
    ours = waveform_to_examples_torch(torch.from_numpy(reference[f"{name}_x"]))
    expected = reference[f"{name}_examples"]
    assert ours.dtype == torch.float32 and tuple(ours.shape) == expected.shape
    assert np.abs(ours.numpy() - expected).max() <= 1e-4


def test_float64_log_mel_equals_naive_and_numpy() -> None:
    x = np.random.default_rng(1).standard_normal(16000 * 3 + 123)
    ours = log_mel_torch(torch.from_numpy(x)).numpy()
    assert ours.dtype == np.float64 and ours.shape == (features.num_frames(x.size), 64)
    assert np.abs(ours - naive_log_mel(x)).max() <= 1e-9
    assert np.abs(ours - features.log_mel(x)).max() <= 1e-10


def test_float32_arithmetic_stays_close() -> None:
    x = 0.3 * np.random.default_rng(2).standard_normal(16000 * 2)
    exact = features.log_mel(x)
    single = log_mel_torch(torch.from_numpy(x).float()).double().numpy()
    assert np.abs(single - exact).max() <= 1e-3


def test_batches_equal_rows_one_by_one() -> None:
    rng = np.random.default_rng(3)
    batch = rng.standard_normal((4, 16000 * 4))
    together = waveform_to_examples_torch(torch.from_numpy(batch), hop_seconds=0.48)
    assert tuple(together.shape) == (4, features.num_examples(batch.shape[1], 0.48), 96, 64)
    for row, examples in zip(batch, together, strict=True):
        expected = vggish.waveform_to_examples(row, 16000, hop_seconds=0.48)
        assert np.abs(examples.numpy() - expected).max() <= 1e-5


@pytest.mark.parametrize("n", [0, 399, 15599, 15600])
def test_short_clips_and_pad_match_numpy(n: int) -> None:
    x = np.random.default_rng(n).standard_normal(n)
    for pad in (False, True):
        ours = waveform_to_examples_torch(torch.from_numpy(x), pad=pad).numpy()
        expected = vggish.waveform_to_examples(x, 16000, pad=pad)
        assert ours.shape == expected.shape
        assert np.abs(ours - expected).max(initial=0.0) <= 1e-5


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(n,\) or \(batch, n\)"):
        waveform_to_examples_torch(torch.zeros(2, 2, 16000))
    with pytest.raises(ValueError, match="float tensor"):
        log_mel_torch(torch.zeros(16000, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"multiple of 0\.01"):
        waveform_to_examples_torch(torch.zeros(16000), hop_seconds=0.005)


@pytest.mark.parametrize(
    ("hop", "pad", "chunk"), [(0.96, False, 1000), (0.48, False, 7777), (0.96, True, 5000)]
)
def test_stream_in_chunks_equals_numpy_stream(hop: float, pad: bool, chunk: int) -> None:
    x = np.random.default_rng(4).standard_normal(16000 * 5 + 321) if not pad else np.ones(9000)
    numpy_stream = features.FrameStream(hop, pad)
    torch_stream = TorchFrameStream("cpu", hop, pad)
    expected, ours = [], []
    for start in range(0, x.size, chunk):
        expected.append(numpy_stream.push(x[start : start + chunk]))
        ours.append(torch_stream.push(x[start : start + chunk]))
    expected.append(numpy_stream.finish())
    ours.append(torch_stream.finish())
    got = torch.cat(ours)
    assert got.dtype == torch.float32 and got.device.type == "cpu"
    want = np.concatenate(expected)
    assert tuple(got.shape) == want.shape and want.shape[0] > 0
    assert np.abs(got.numpy() - want).max() <= 1e-5


def test_pipeline_with_torch_front_end_equals_numpy_front_end(random_model) -> None:  # type: ignore[no-untyped-def]
    """What a CUDA user gets (front end on the model's device), forced on the CPU."""
    rng = np.random.default_rng(5)
    stereo = (0.2 * rng.standard_normal((44100 * 4, 2)) * 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, stereo, 44100, format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    on_device = embed_source(random_model, data, EmbedOptions(frontend="torch"))
    reference = embed_source(random_model, data, EmbedOptions(frontend="numpy"))
    assert on_device.embeddings.shape == reference.embeddings.shape == (4, params.EMBEDDING_SIZE)
    scale = max(1.0, float(np.abs(reference.embeddings).max()))
    assert np.abs(on_device.embeddings - reference.embeddings).max() <= 1e-4 * scale
    assert np.array_equal(on_device.timestamps, reference.timestamps)


def test_auto_front_end_follows_the_model_device(random_model) -> None:  # type: ignore[no-untyped-def]
    assert EmbedOptions().frontend_device(random_model.device) is None  # CPU model: NumPy reference path
    assert EmbedOptions(frontend="torch").frontend_device(random_model.device) == torch.device("cpu")
    gpu = torch.device("cuda", 1)  # only compared, never used: no GPU needed
    assert EmbedOptions().frontend_device(gpu) == gpu  # a GPU model: log-mel on its GPU
    assert EmbedOptions(frontend="numpy").frontend_device(gpu) is None
    with pytest.raises(ValueError, match="frontend must be one of"):
        EmbedOptions(frontend="gpu")  # type: ignore[arg-type]


def test_to_device_converts_dtype_on_cpu() -> None:
    out = to_device(np.arange(4, dtype=np.float64), torch.device("cpu"), torch.float32)
    assert out.dtype == torch.float32 and out.tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_front_end_matches_reference(reference: dict[str, np.ndarray]) -> None:
    ours = waveform_to_examples_torch(torch.from_numpy(reference["noise_x"]).cuda())
    assert ours.device.type == "cuda"
    assert np.abs(ours.cpu().numpy() - reference["noise_examples"]).max() <= 1e-4
