"""The embedding pipeline: parity with the step-by-step path, streaming == one-shot, bounded memory."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import vggish
from vggish.audio.resample import resample
from vggish.errors import InvalidAudioError, UndecodableAudioError
from vggish.features import logmel as features
from vggish.pipeline import driver as pipeline
from vggish.pipeline.driver import EmbedOptions


def step_by_step(model: vggish.Runtime, examples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        emb = model(torch.from_numpy(examples))
    return emb.numpy(), model.postprocess(emb).numpy()


def test_embed_equals_model_on_examples(
    random_model: vggish.Runtime, reference: dict[str, np.ndarray]
) -> None:
    x = reference["noise44k_x"]
    result = random_model.embed(x, 44100, batch_size=2)
    emb, post = step_by_step(random_model, vggish.waveform_to_examples(x, 44100))
    assert result.embeddings.shape == (5, 128) and result.embeddings.dtype == np.float32
    assert np.abs(result.embeddings - emb).max() <= 1e-5 * np.abs(emb).max()  # batching: summation order
    assert result.postprocessed is not None and result.postprocessed.dtype == np.uint8
    assert np.abs(result.postprocessed.astype(int) - post.astype(int)).max() <= 1
    assert np.allclose(result.timestamps, [[0.96 * k, 0.96 * k + 0.975] for k in range(5)])
    assert (result.sample_rate, result.channels, result.num_samples) == (44100, 1, 220500)
    assert result.duration == pytest.approx(5.0)


def test_embed_file_equals_embed_on_decoded_samples(tmp_path: Path, random_model: vggish.Runtime) -> None:
    rng = np.random.default_rng(3)
    ints = (rng.standard_normal((48000 * 3, 2)) * 4000).astype(np.int16)
    path = tmp_path / "stereo.wav"
    sf.write(path, ints, 48000, subtype="PCM_16")
    from_file = random_model.embed_file(path, hop_seconds=0.5, pad=True)
    from_array = random_model.embed(ints, 48000, hop_seconds=0.5, pad=True)
    assert from_file.embeddings.shape == (features.num_examples(48000, 0.5), 128)
    assert np.array_equal(from_file.timestamps, from_array.timestamps)
    scale = np.abs(from_array.embeddings).max()
    assert np.abs(from_file.embeddings - from_array.embeddings).max() <= 1e-5 * scale
    assert from_file.channels == 2 and from_file.sample_rate == 48000 and from_file.num_samples == 144000


def test_short_clip_without_pad_gives_empty_results(random_model: vggish.Runtime) -> None:
    for n in (0, 100, 15599):
        result = random_model.embed(np.zeros(n), 16000)
        assert result.embeddings.shape == (0, 128) and result.timestamps.shape == (0, 2)
        assert result.postprocessed is not None and result.postprocessed.shape == (0, 128)
    padded = random_model.embed(np.zeros(100), 16000, pad=True)
    assert padded.embeddings.shape == (1, 128)
    assert padded.timestamps.tolist() == [[0.0, 0.975]]


def test_embed_each_goes_on_past_inputs_that_fail(tmp_path: Path, random_model: vggish.Runtime) -> None:
    rng = np.random.default_rng(3)
    good = [tmp_path / f"g{i}.wav" for i in range(3)]
    for i, path in enumerate(good):
        sf.write(path, 0.1 * rng.standard_normal(16000 * (i + 1)), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + b"\0" * 40)
    inputs = [str(good[0]), str(bad), str(tmp_path / "missing.wav"), str(good[1]), str(good[2])]
    options = EmbedOptions(batch_size=2)  # batches cut across inputs, before and after failures
    outcomes = dict(pipeline.embed_each(random_model, inputs, options))
    assert sorted(outcomes) == list(range(5))
    assert isinstance(outcomes[1], UndecodableAudioError) and isinstance(outcomes[2], OSError)
    alone = pipeline.embed_many(random_model, [str(p) for p in good], options)
    for index, expected in zip((0, 3, 4), alone, strict=True):
        got = outcomes[index]
        assert isinstance(got, pipeline.EmbeddingResult)
        np.testing.assert_array_equal(got.embeddings, expected.embeddings)
        assert got.embeddings.shape[0] == expected.timestamps.shape[0] > 0
    with pytest.raises(UndecodableAudioError, match="cannot decode"):
        pipeline.embed_many(random_model, inputs, options)  # embed_iter stops at the first failure


def test_embed_each_drops_what_a_failing_input_queued(random_model: vggish.Runtime) -> None:
    rng = np.random.default_rng(4)
    long = io.BytesIO()
    sf.write(long, 0.1 * rng.standard_normal(16000 * 60), 16000, format="FLAC")
    short = io.BytesIO()
    sf.write(short, 0.1 * rng.standard_normal(16000 * 3), 16000, format="WAV", subtype="PCM_16")
    corrupt = bytearray(long.getvalue())
    middle = len(corrupt) // 2
    corrupt[middle : middle + 5000] = b"\xff" * 5000  # the decoder loses sync half way
    options = EmbedOptions(batch_size=3)
    inputs = [short.getvalue(), bytes(corrupt), short.getvalue()]
    outcomes = dict(pipeline.embed_each(random_model, inputs, options))
    assert isinstance(outcomes[1], InvalidAudioError) and "decoding failed after" in str(outcomes[1])
    expected = pipeline.embed_many(random_model, [short.getvalue()], options)[0].embeddings
    for index in (0, 2):
        got = outcomes[index]
        assert isinstance(got, pipeline.EmbeddingResult)
        np.testing.assert_array_equal(got.embeddings, expected)  # none of the failed input's rows


def test_postprocess_options(random_model: vggish.Runtime) -> None:
    x = np.random.default_rng(0).standard_normal(20000) * 0.1
    assert random_model.embed(x, 16000, postprocess=False).postprocessed is None
    bare = vggish.Runtime(vggish.VGGish().eval())  # a network without PCA parameters
    assert bare.embed(x, 16000).postprocessed is None  # None: "when the weights carry PCA"
    with pytest.raises(ValueError, match="PCA"):
        bare.embed(x, 16000, postprocess=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hop_seconds": 0.123}, "multiple of 0.01"),
        ({"batch_size": 0}, "batch_size"),
        ({"resampler": "linear"}, "resampler"),
    ],
)
def test_bad_options(random_model: vggish.Runtime, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        random_model.embed(np.zeros(16000), 16000, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("waveform", "rate", "message"),
    [
        (np.array([0.0, np.nan] * 10000), 16000, "NaN|finite"),
        (np.zeros((2, 48000)), 16000, r"waveform\.T"),
        (np.zeros((100, 0)), 16000, "channel"),
        (np.zeros(16000), 0, "sample.rate"),
    ],
)
def test_bad_waveforms_raise_value_error(
    random_model: vggish.Runtime, waveform: np.ndarray, rate: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        random_model.embed(waveform, rate)


@pytest.mark.slow
def test_streamed_file_equals_one_shot_computation(tmp_path: Path) -> None:
    """Three minutes of stereo 44.1 kHz: decoded, resampled and framed in chunks vs all at once."""
    rng = np.random.default_rng(7)
    seconds = 180
    ints = (rng.standard_normal((44100 * seconds, 2)) * 3000).astype(np.int16)
    path = tmp_path / "long.flac"
    sf.write(path, ints, 44100, subtype="PCM_16")
    streamed = vggish.wavfile_to_examples(path)
    mono = ints.astype(np.float64).mean(axis=1) / 32768.0
    one_shot = features.FrameStream()
    whole = np.concatenate([one_shot.push(resample(mono, 44100, 16000)), one_shot.finish()])
    assert streamed.shape == whole.shape == (features.num_examples(16000 * seconds), 96, 64)
    assert np.array_equal(streamed, whole)


LONG_FILE_SCRIPT = textwrap.dedent("""
    import sys, warnings
    import numpy as np
    import vggish
    warnings.simplefilter("ignore")


    class Summary:
        \"\"\"A backend that costs nothing: each example's mean over 48-value runs (128 numbers).\"\"\"
        name = "summary"

        def __call__(self, examples):
            return np.asarray(examples, dtype=np.float32).reshape(len(examples), 128, 48).mean(axis=2)


    network = vggish.load_model("random", backend="torch").network
    model = vggish.Runtime(network, Summary())
    result = model.embed_file(sys.argv[1], batch_size=32)
    # VmHWM is this process's own peak. ru_maxrss is not: Linux carries the parent's peak across
    # fork + exec, so under a big pytest process it reports pytest's memory.
    with open("/proc/self/status") as f:
        peak_mb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    print(result.embeddings.shape[0], result.duration, peak_mb)
""")


@pytest.mark.slow
def test_one_hour_stereo_file_in_bounded_memory(tmp_path: Path) -> None:
    """A 1-hour 44.1 kHz stereo WAV (635 MB) goes through the whole data path (decode, mono,
    resample, log-mel, packer, results) with peak RSS under 1 GB: held whole, its samples alone
    would take 635 MB as int16 and 2.5 GB as float64. The network is a backend that costs nothing
    (the real one adds one batch of activations, whatever the length: tests/app/test_reliability.py
    measures that), so the test takes seconds, not minutes."""
    path = tmp_path / "hour.wav"
    rng = np.random.default_rng(0)
    block = (rng.standard_normal((44100 * 60, 2)) * 2000).astype(np.int16)
    with sf.SoundFile(path, "w", samplerate=44100, channels=2, subtype="PCM_16") as f:
        for _ in range(60):
            f.write(block)
    out = subprocess.run(
        [sys.executable, "-c", LONG_FILE_SCRIPT, str(path)], capture_output=True, text=True, check=True
    )
    count, duration, peak_mb = out.stdout.split()
    assert int(count) == features.num_examples(16000 * 3600) == 3749
    assert float(duration) == pytest.approx(3600.0)
    assert float(peak_mb) < 1024, f"peak RSS {peak_mb} MB"


def test_options_are_validated_once() -> None:
    opts = EmbedOptions(hop_seconds=0.48, pad=True)
    assert opts.hop_seconds == 0.48 and opts.postprocess is None
