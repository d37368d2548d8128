"""Audio files for tests, made with sox, ffmpeg and espeak-ng from a known signal.

Plain functions first (other test modules import them), pytest fixtures at the end: a conftest
re-exports them with ``pytest_plugins = ["audio_fixtures"]`` or ``from audio_fixtures import ...``.

Every lossless file is encoded from the int16 array that :func:`known_signal` returns, so a test
can compare decoded samples with the exact integers written.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

SIGNAL_RATE = 44_100  # Hz: the rate of the known signal in most fixtures
OPUS_RATE = 48_000  # Hz: Opus always decodes at 48 kHz, so its source is made at that rate
SIGNAL_SECONDS = 2.0
LONG_MINUTES = 10  # length of the long stereo file used for the streaming tests

# name -> (channels, rate, lossless): what each file made by make_fixture_files holds
FIXTURE_FORMATS: dict[str, tuple[int, int, bool]] = {
    "wav16_mono": (1, SIGNAL_RATE, True),
    "wav16_stereo": (2, SIGNAL_RATE, True),
    "wav24_stereo": (2, SIGNAL_RATE, True),
    "wav_float_stereo": (2, SIGNAL_RATE, True),  # float32: libsndfile gives rint(x * 32767)
    "flac_stereo": (2, SIGNAL_RATE, True),
    "ogg_vorbis": (2, SIGNAL_RATE, False),
    "opus": (2, OPUS_RATE, False),
    "mp3": (2, SIGNAL_RATE, False),
    "m4a_aac": (2, SIGNAL_RATE, False),
    "m4a_alac": (2, SIGNAL_RATE, True),  # lossless, only ffmpeg reads it
    "mkv_video_flac": (2, SIGNAL_RATE, True),  # video + FLAC audio in Matroska
    "mp4_video_aac": (2, SIGNAL_RATE, False),  # video + AAC audio in MP4
}
# Files that soundfile cannot open, so the ffmpeg fallback decodes them.
FFMPEG_ONLY = frozenset({"m4a_aac", "m4a_alac", "mkv_video_flac", "mp4_video_aac"})
# Files whose making needs ffmpeg (sox writes the others).
MADE_WITH_FFMPEG = FFMPEG_ONLY | {"opus"}


def known_signal(channels: int = 2, rate: int = SIGNAL_RATE, seconds: float = SIGNAL_SECONDS) -> np.ndarray:
    """The deterministic test signal: a few sines per channel plus a little seeded noise.

    Args:
        channels: Number of channels (each has its own frequencies).
        rate: Sample rate in Hz.
        seconds: Duration.

    Returns:
        int16 array of shape (samples, channels), peak below 0.6 of full scale.
    """
    t = np.arange(round(rate * seconds)) / rate
    rng = np.random.default_rng(1234)
    columns = []
    for c in range(channels):
        tone = 0.35 * np.sin(2 * np.pi * (440.0 + 220.0 * c) * t)
        tone += 0.15 * np.sin(2 * np.pi * (1234.0 + 100.0 * c) * t + c)
        tone += 0.01 * rng.standard_normal(t.size)
        columns.append(tone)
    return np.round(np.stack(columns, axis=1) * 32767.0).astype(np.int16)


def run_tool(args: Sequence[str | Path]) -> None:
    """Run sox/ffmpeg/espeak-ng quietly and fail loudly with its stderr."""
    done = subprocess.run([str(a) for a in args], capture_output=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {done.stderr.decode(errors='replace')[-500:]}")


def write_raw(path: Path, samples: np.ndarray) -> Path:
    """Write int16 samples (samples, channels) as headerless little-endian PCM."""
    path.write_bytes(samples.astype("<i2").tobytes())
    return path


def _sox_from_raw(raw: Path, rate: int, channels: int, out: Path, *encoding: str) -> Path:
    source = ["-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", str(channels)]
    run_tool(["sox", *source, raw, *encoding, out])
    return out


def _ffmpeg_from_raw(raw: Path, rate: int, channels: int, out: Path, *options: str) -> Path:
    source: list[str | Path] = ["-f", "s16le", "-ar", str(rate), "-ac", str(channels), "-i", raw]
    run_tool(["ffmpeg", "-nostdin", "-v", "error", "-y", *source, *options, out])
    return out


def _ffmpeg_with_video(raw: Path, out: Path, *audio_codec: str) -> Path:
    video = ["-f", "lavfi", "-i", f"testsrc=size=64x48:rate=5:duration={SIGNAL_SECONDS}"]
    audio: list[str | Path] = ["-f", "s16le", "-ar", str(SIGNAL_RATE), "-ac", "2", "-i", raw]
    mapping = ["-map", "0:v", "-map", "1:a", "-c:v", "mpeg4", *audio_codec, "-shortest"]
    run_tool(["ffmpeg", "-nostdin", "-v", "error", "-y", *video, *audio, *mapping, out])
    return out


def make_fixture_files(tmp_dir: Path, with_ffmpeg: bool = True) -> dict[str, Path]:
    """Encode the known signal into every format in FIXTURE_FORMATS (sox must be installed).

    Args:
        tmp_dir: Existing directory to write into.
        with_ffmpeg: Also make the files that need ffmpeg (MADE_WITH_FFMPEG).

    Returns:
        Name -> file path; names as in FIXTURE_FORMATS.
    """
    files = _make_sox_files(tmp_dir)
    if with_ffmpeg:
        files |= _make_ffmpeg_files(tmp_dir)
    return files


def _make_sox_files(tmp_dir: Path) -> dict[str, Path]:
    mono = write_raw(tmp_dir / "mono.raw", known_signal(1))
    stereo = write_raw(tmp_dir / "stereo.raw", known_signal(2))
    r = SIGNAL_RATE
    return {
        "wav16_mono": _sox_from_raw(mono, r, 1, tmp_dir / "mono16.wav", "-b", "16"),
        "wav16_stereo": _sox_from_raw(stereo, r, 2, tmp_dir / "stereo16.wav", "-b", "16"),
        "wav24_stereo": _sox_from_raw(stereo, r, 2, tmp_dir / "stereo24.wav", "-b", "24"),
        "wav_float_stereo": _sox_from_raw(
            stereo, r, 2, tmp_dir / "float.wav", "-e", "floating-point", "-b", "32"
        ),
        "flac_stereo": _sox_from_raw(stereo, r, 2, tmp_dir / "stereo.flac"),
        "ogg_vorbis": _sox_from_raw(stereo, r, 2, tmp_dir / "stereo.ogg"),
        "mp3": _sox_from_raw(stereo, r, 2, tmp_dir / "stereo.mp3", "-C", "192"),
    }


def _make_ffmpeg_files(tmp_dir: Path) -> dict[str, Path]:
    stereo = write_raw(tmp_dir / "stereo.raw", known_signal(2))
    opus_src = write_raw(tmp_dir / "stereo48k.raw", known_signal(2, OPUS_RATE))
    r = SIGNAL_RATE
    return {
        "opus": _ffmpeg_from_raw(opus_src, OPUS_RATE, 2, tmp_dir / "stereo.opus", "-c:a", "libopus"),
        "m4a_aac": _ffmpeg_from_raw(stereo, r, 2, tmp_dir / "aac.m4a", "-c:a", "aac", "-b:a", "192k"),
        "m4a_alac": _ffmpeg_from_raw(stereo, r, 2, tmp_dir / "alac.m4a", "-c:a", "alac"),
        "mkv_video_flac": _ffmpeg_with_video(stereo, tmp_dir / "video.mkv", "-c:a", "flac"),
        "mp4_video_aac": _ffmpeg_with_video(stereo, tmp_dir / "video.mp4", "-c:a", "aac"),
    }


def make_speech_wav(tmp_dir: Path, text: str = "The quick brown fox jumps over the lazy dog.") -> Path:
    """Speak ``text`` with espeak-ng into a WAV file (22050 Hz mono, 16-bit)."""
    out = tmp_dir / "speech.wav"
    run_tool(["espeak-ng", "-w", out, text])
    return out


def make_long_wav(tmp_dir: Path, minutes: int = LONG_MINUTES, rate: int = 44_100) -> Path:
    """A long 16-bit stereo WAV (10 minutes at 44.1 kHz is 106 MB) for the streaming tests."""
    out = tmp_dir / f"long_{minutes}min.wav"
    synth = ["synth", f"{minutes * 60}", "sine", "300-3000", "pinknoise", "vol", "0.5"]
    run_tool(["sox", "-n", "-r", str(rate), "-c", "2", "-b", "16", out, *synth])
    return out


def wav_bytes(channels: int, rate: int, samples: np.ndarray | None = None, *, bits: int = 16) -> bytes:
    """A canonical PCM WAV file in memory, with any header values (even invalid ones).

    Args:
        channels: Channel count written in the header (0 makes an invalid file).
        rate: Sample rate written in the header (0 or huge makes an invalid file).
        samples: int16 data to append (its bytes, as is); None for one second of silence.
        bits: Bits per sample written in the header.

    Returns:
        The file's bytes.
    """
    data = b"\0" * (2 * max(channels, 1) * 16000) if samples is None else samples.tobytes()
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * align % 2**32, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def make_bad_files(tmp_dir: Path) -> dict[str, Path]:
    """Files that no backend can read as audio (each must raise ValueError).

    Args:
        tmp_dir: Existing directory to write into.

    Returns:
        Name -> path: zeros, text, empty, truncated header, truncated data, 0 channels, and
        sample rates 0 and 4 GHz.
    """
    good = wav_bytes(2, 16000, known_signal(2, 16000, 1.0))
    files = {
        "zeros.wav": b"\0" * 4096,
        "text.txt": b"This is a text file, not audio.\n" * 40,
        "empty.wav": b"",
        "header_truncated.wav": good[:30],
        "data_truncated.wav": good[: len(good) // 2 + 1],
        "zero_channels.wav": wav_bytes(0, 16000),
        "zero_rate.wav": wav_bytes(1, 0),
        "absurd_rate.wav": wav_bytes(1, 4_000_000_000),
    }
    for name, data in files.items():
        (tmp_dir / name).write_bytes(data)
    return {name: tmp_dir / name for name in files}


def tools_available(*names: str) -> bool:
    """Whether all the named command-line tools are on PATH."""
    return all(shutil.which(name) for name in names)


# --- pytest fixtures (session-scoped: the files are made once) ---------------------------------


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The formats in FIXTURE_FORMATS, made once per session (only sox's ones without ffmpeg)."""
    if not tools_available("sox"):
        pytest.skip("sox is needed to make the audio fixtures")
    return make_fixture_files(tmp_path_factory.mktemp("audio"), tools_available("ffmpeg"))


@pytest.fixture(scope="session")
def bad_audio_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Broken and non-audio files (see make_bad_files)."""
    return make_bad_files(tmp_path_factory.mktemp("bad_audio"))


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken sentence from espeak-ng."""
    if not tools_available("espeak-ng"):
        pytest.skip("espeak-ng is needed for the speech fixture")
    return make_speech_wav(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="session")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten minutes of 44.1 kHz stereo (106 MB) for streaming and memory tests."""
    if not tools_available("sox"):
        pytest.skip("sox is needed for the long file")
    return make_long_wav(tmp_path_factory.mktemp("long"))
