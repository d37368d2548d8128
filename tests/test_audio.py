"""vggish.audio.decode: every common format decodes to the reference's int16 / 32768 samples.

Files are made from a known int16 signal (tests/audio_fixtures.py); lossless ones must give those
integers back exactly, lossy ones what soundfile's int16 read (the reference) or ffmpeg's s16le
output gives. Streaming is checked for equality with load() and for bounded memory (tracemalloc),
and every test checks that no temporary file or child process is left behind.
"""

from __future__ import annotations

import gc
import io
import os
import subprocess
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vggish.audio import decode as audio
from vggish.audio.decode import AudioInfo, load, probe, stream, to_mono, validate_waveform

pytest.register_assert_rewrite("audio_fixtures")  # before importing it; it is also a plugin

from audio_fixtures import (  # noqa: E402
    FFMPEG_ONLY,
    FIXTURE_FORMATS,
    known_signal,
    run_tool,
    tools_available,
    wav_bytes,
)

pytest_plugins = ["audio_fixtures"]  # its fixtures: audio_files, bad_audio_files, long_wav, ...

FREEDESKTOP_DIR = Path("/usr/share/sounds/freedesktop/stereo")
ALSA_DIR = Path("/usr/share/sounds/alsa")
LOSSLESS = [k for k, (_, _, exact) in FIXTURE_FORMATS.items() if exact]
LOSSY = [k for k, (_, _, exact) in FIXTURE_FORMATS.items() if not exact]
needs_ffmpeg = pytest.mark.skipif(not tools_available("ffmpeg"), reason="ffmpeg not installed")


def _params(names: list[str]) -> list[object]:
    """Parametrize by fixture name; the ffmpeg-only ones carry the ffmpeg marker."""
    marks = [pytest.mark.ffmpeg, needs_ffmpeg]
    return [pytest.param(n, id=n, marks=marks if n in FFMPEG_ONLY else ()) for n in names]


def _children() -> list[str]:
    """Processes whose parent is this one (zombies included), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            found.append(f"{stat.parent.name} ({fields[0]})")
    return found


@pytest.fixture(autouse=True)
def no_leaks(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Send temporary files to a fresh folder; after the test it must be empty, and no child process
    the test started (an ffmpeg) may be left (servers of other test modules may live on)."""
    tmp_path_factory.getbasetemp()  # fix pytest's own base before moving tempfile's
    folder = tmp_path_factory.mktemp("tempdir")
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    before = {child.split()[0] for child in _children()}
    yield folder
    if any(folder.iterdir()):
        gc.collect()  # a file object in a reference cycle closes (and so deletes its file) only now
    assert sorted(p.name for p in folder.iterdir()) == []
    assert [child for child in _children() if child.split()[0] not in before] == []


def _source(name: str, audio_files: dict[str, Path]) -> tuple[Path, np.ndarray, int]:
    if name not in audio_files:
        pytest.skip(f"{name} needs ffmpeg to be made")
    channels, rate, _ = FIXTURE_FORMATS[name]
    return audio_files[name], known_signal(channels, rate), rate


def _ffmpeg_s16le(path: Path, channels: int) -> np.ndarray:
    """What ffmpeg alone decodes, as int16 (frames, channels)."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0"]
    raw = subprocess.run([*command, "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<i2").reshape(-1, channels)


def _aligned_error(decoded: np.ndarray, source: np.ndarray, max_lag: int = 2048) -> float:
    """RMS error relative to RMS signal after the best delay (lossy encoders add priming)."""
    x, y = source[:, 0].astype(np.float64), decoded[:, 0].astype(np.float64)
    size = 2 * (16384 + max_lag)  # cross-correlation by FFT, zero-padded so nothing wraps
    spectrum = np.fft.rfft(y[: 16384 + max_lag], size) * np.conj(np.fft.rfft(x[:16384], size))
    lag = int(np.argmax(np.fft.irfft(spectrum, size)[:max_lag]))
    n = min(len(source), len(decoded) - lag) - 2048  # the codecs' last frame may fade out
    diff = decoded[lag : lag + n] - source[:n]
    return float(np.sqrt(np.mean(diff**2) / np.mean(source[:n].astype(np.float64) ** 2)))


def _force_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make soundfile refuse every input, so the ffmpeg fallback decodes it."""

    def refuse(src: object) -> AudioInfo:
        raise audio._UnreadableError("refused by the test")

    monkeypatch.setattr(audio, "_probe_soundfile", refuse)


# --- Formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _params(LOSSLESS))
def test_lossless_formats_give_the_written_int16_exactly(name: str, audio_files: dict[str, Path]) -> None:
    path, source, rate = _source(name, audio_files)
    x, sr = load(path)
    assert sr == rate
    assert x.dtype == np.float32
    assert x.shape == source.shape
    np.testing.assert_array_equal(x, source / np.float32(32768))
    assert probe(path).backend == ("ffmpeg" if name in FFMPEG_ONLY else "soundfile")


@pytest.mark.parametrize("name", _params(LOSSY))
def test_lossy_formats_are_close_to_the_source(name: str, audio_files: dict[str, Path]) -> None:
    path, source, rate = _source(name, audio_files)
    x, sr = load(path)
    assert sr == rate
    assert x.shape[1] == source.shape[1]
    assert abs(len(x) - len(source)) < 4096
    assert _aligned_error(x * 32768, source) < 0.15


@pytest.mark.parametrize("name", _params(LOSSY))
def test_lossy_formats_equal_the_reference_reader(name: str, audio_files: dict[str, Path]) -> None:
    """soundfile's int16 read (what the reference does), or ffmpeg's s16le where it must decode."""
    path, source, _ = _source(name, audio_files)
    x, _ = load(path)
    if name in FFMPEG_ONLY:
        expected = _ffmpeg_s16le(path, source.shape[1])
    else:
        expected, _ = sf.read(path, dtype="int16", always_2d=True)
    np.testing.assert_array_equal(x * 32768, expected)


def test_float_wav_is_quantised_with_the_int16_scale(audio_files: dict[str, Path]) -> None:
    """libsndfile's own int16 read of float data only rounds (giving -1, 0, 1); we scale by 32768."""
    path = audio_files["wav_float_stereo"]
    unscaled, _ = sf.read(path, dtype="int16")
    assert np.abs(unscaled).max() <= 1  # why the float subtypes are read as floats instead
    x, _ = load(path)
    np.testing.assert_array_equal(x * 32768, known_signal(2))
    assert probe(path).format == "WAV/FLOAT"


def test_probe_reports_the_file(audio_files: dict[str, Path]) -> None:
    info = probe(audio_files["flac_stereo"])
    assert info == AudioInfo(44_100, 2, 88_200, "FLAC/PCM_16", "soundfile")
    assert info.duration == pytest.approx(2.0)
    mp3 = probe(audio_files["mp3"])
    assert (mp3.frames, mp3.duration, mp3.format) == (None, None, "MP3/MPEG_LAYER_III")


@pytest.mark.ffmpeg
@needs_ffmpeg
def test_probe_reports_ffmpeg_files(audio_files: dict[str, Path]) -> None:
    assert probe(audio_files["m4a_aac"]) == AudioInfo(44_100, 2, None, "mov/aac", "ffmpeg")
    assert probe(audio_files["mkv_video_flac"]).format == "matroska/flac"


@pytest.mark.ffmpeg
@needs_ffmpeg
@pytest.mark.parametrize("name", ["wav16_stereo", "wav24_stereo", "flac_stereo", "wav16_mono"])
def test_ffmpeg_path_equals_soundfile(
    name: str, audio_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, rate = load(audio_files[name])
    _force_ffmpeg(monkeypatch)
    info, blocks = stream(audio_files[name], block_frames=10_000)
    assert info.backend == "ffmpeg"
    assert info.sample_rate == rate
    np.testing.assert_array_equal(np.concatenate(list(blocks)), expected)


@pytest.mark.ffmpeg
@needs_ffmpeg
def test_six_channels_through_both_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = known_signal(6, 16_000, 0.5)
    raw = tmp_path / "six.raw"
    raw.write_bytes(source.tobytes())
    wav = tmp_path / "six.wav"
    run_tool(["sox", "-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "6", raw, wav])
    x, _ = load(wav)
    np.testing.assert_array_equal(x * 32768, source)
    np.testing.assert_array_equal(to_mono(x), np.mean(source / 32768.0, axis=1))
    _force_ffmpeg(monkeypatch)
    np.testing.assert_array_equal(load(wav)[0], x)


@pytest.mark.ffmpeg
@needs_ffmpeg
def test_wav_streamed_by_an_encoder_has_unknown_sizes(tmp_path: Path, audio_files: dict[str, Path]) -> None:
    """ffmpeg writing WAV to a pipe leaves 0xFFFFFFFF as the data size: that is not truncation."""
    piped = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(audio_files["wav16_stereo"]), "-f", "wav", "-"],
        capture_output=True,
        check=True,
    ).stdout
    assert piped[piped.index(b"data") + 4 :][:4] == b"\xff\xff\xff\xff"
    np.testing.assert_array_equal(load(piped)[0] * 32768, known_signal(2))


@pytest.mark.ffmpeg
@needs_ffmpeg
def test_video_without_audio_says_so(tmp_path: Path) -> None:
    video = tmp_path / "silent.mp4"
    testsrc = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=1"]
    run_tool(["ffmpeg", "-nostdin", "-v", "error", *testsrc, "-c:v", "mpeg4", video])
    with pytest.raises(ValueError, match=r"ffmpeg: no audio stream \(container: mov"):
        probe(video)


def test_speech_from_espeak(speech_wav: Path) -> None:
    x, sr = load(speech_wav)
    assert (sr, x.shape[1]) == (22_050, 1)
    assert 1.0 < len(x) / sr < 10.0
    assert 0.05 < np.abs(x).max() <= 1.0


# --- Real recordings ------------------------------------------------------------------------------


def _real_recordings() -> list[Path]:
    return sorted(ALSA_DIR.glob("*.wav")) + sorted(FREEDESKTOP_DIR.glob("*.oga"))


@pytest.mark.skipif(not _real_recordings(), reason="alsa-utils / sound-theme-freedesktop missing")
def test_real_recordings_decode_sensibly() -> None:
    for path in _real_recordings():
        x, sr = load(path)
        info = probe(path)
        assert sr in (8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 96_000), path
        assert x.shape[1] == info.channels in (1, 2), path
        assert len(x) == info.frames, path
        assert 0.05 < len(x) / sr < 60, path
        assert 0.01 < np.abs(x).max() <= 1.0, path
        assert x.dtype == np.float32


# --- Sources: bytes, file objects ---------------------------------------------------------------


class _Unseekable(io.RawIOBase):
    """A pipe-like binary stream: read() only."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._data.readinto(buffer)


@pytest.mark.slow
@pytest.mark.parametrize("name", _params(["flac_stereo", "mp3", "m4a_aac"]))
def test_bytes_and_file_objects_decode_like_paths(name: str, audio_files: dict[str, Path]) -> None:
    path = audio_files[name] if name in audio_files else pytest.skip("needs ffmpeg")
    expected, rate = load(path)
    data = path.read_bytes()
    padded = io.BytesIO(b"junk" + data)
    padded.seek(4)  # decoding starts where the object is positioned
    backend = "ffmpeg" if name in FFMPEG_ONLY else "soundfile"
    with path.open("rb") as opened:
        for source in (data, io.BytesIO(data), padded, opened):
            assert probe(source).backend == backend
            x, sr = load(source)
            assert sr == rate
            np.testing.assert_array_equal(x, expected)
        assert padded.tell() == 4  # probe and load put a seekable object back where it was
    x, sr = load(_Unseekable(data))  # type: ignore[arg-type]  # read once, through a temporary file
    np.testing.assert_array_equal(x, expected)


def test_text_mode_file_objects_are_refused(audio_files: dict[str, Path]) -> None:
    with (
        audio_files["wav16_mono"].open(encoding="latin-1") as text,
        pytest.raises(TypeError, match="binary mode"),
    ):
        load(text)  # type: ignore[arg-type]


# --- Streaming ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_stream_of_ten_minutes_equals_load_in_bounded_memory(long_wav: Path) -> None:
    whole, rate = load(long_wav)
    assert whole.shape == (10 * 60 * rate, 2)
    tracemalloc.start()
    try:
        info, blocks = stream(long_wav, block_frames=1 << 16)
        offset = largest = 0
        for block in blocks:
            assert block.dtype == np.float32
            assert np.array_equal(block, whole[offset : offset + len(block)])
            offset, largest = offset + len(block), max(largest, len(block))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (offset, largest, info.frames) == (len(whole), 1 << 16, len(whole))
    block_bytes = (1 << 16) * 2 * 4  # one float32 block: 0.5 MiB, against 202 MiB for the file
    assert peak < 8 * block_bytes, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.slow
@pytest.mark.ffmpeg
@needs_ffmpeg
def test_ffmpeg_stream_of_ten_minutes_is_bounded(long_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _force_ffmpeg(monkeypatch)
    tracemalloc.start()
    try:
        info, blocks = stream(long_wav, block_frames=1 << 16)
        frames = largest = 0
        for block in blocks:
            frames, largest = frames + len(block), max(largest, len(block))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (info.backend, frames, largest) == ("ffmpeg", 10 * 60 * 44_100, 1 << 16)
    assert peak < 8 * (1 << 16) * 2 * 4, f"peak {peak / 2**20:.1f} MiB"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(block_frames=st.integers(1, 5000), channels=st.integers(1, 3))
def test_any_block_size_concatenates_to_load(block_frames: int, channels: int) -> None:
    data = wav_bytes(channels, 8000, known_signal(channels, 8000, 0.5))
    info, blocks = stream(data, block_frames=block_frames)
    parts = list(blocks)
    assert all(1 <= len(p) <= block_frames and p.shape[1] == channels for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), load(data)[0])
    assert info.frames == 4000


@pytest.mark.parametrize("block_frames", [0, -1, 1.5, True])
def test_block_frames_must_be_a_positive_integer(block_frames: int) -> None:
    with pytest.raises(ValueError, match="block_frames"):
        stream(wav_bytes(1, 16000), block_frames=block_frames)


@pytest.mark.slow
@pytest.mark.ffmpeg
@needs_ffmpeg
def test_stopping_early_stops_ffmpeg_and_removes_the_spool(
    audio_files: dict[str, Path], no_leaks: Path
) -> None:
    data = audio_files["m4a_alac"].read_bytes()
    others = set(_children())  # processes of other tests' fixtures (servers) are not ours

    def ours() -> list[str]:
        return [child for child in _children() if child not in others]

    _, blocks = stream(data, block_frames=1000)
    assert len(list(no_leaks.iterdir())) == 1  # the spooled copy that ffmpeg reads
    next(blocks)
    assert len(ours()) == 1  # ffmpeg is running
    blocks.close()  # type: ignore[attr-defined]
    assert ours() == []
    assert list(no_leaks.iterdir()) == []
    _, dropped = stream(data, block_frames=1000)
    next(dropped)
    del dropped  # dropped without close(): the generator's finally still runs
    gc.collect()
    assert (ours(), list(no_leaks.iterdir())) == ([], [])
    _, never_started = stream(data)
    del never_started  # never iterated: weakref.finalize removes the spool
    gc.collect()
    assert list(no_leaks.iterdir()) == []


# --- Bad inputs -----------------------------------------------------------------------------------

BAD_FILES = {
    "zeros.wav": "Format not recognised",
    "text.txt": "Format not recognised",
    "empty.wav": "empty",
    "header_truncated.wav": "No 'data' chunk",
    "data_truncated.wav": "truncated: the header declares 64000 bytes",
    "zero_channels.wav": "Channel count is zero",
    "zero_rate.wav": "sample rate|SF_INFO struct incomplete",  # ffmpeg's reason | soundfile's
    "absurd_rate.wav": "sample rate|SF_INFO struct incomplete",
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_raise_value_error_naming_the_file(name: str, bad_audio_files: dict[str, Path]) -> None:
    path = bad_audio_files[name]
    for call in (probe, load, lambda p: list(stream(p)[1])):
        with pytest.raises(ValueError, match=BAD_FILES[name]) as caught:
            call(path)
        assert str(path) in str(caught.value)


def test_bad_bytes_raise_value_error() -> None:
    with pytest.raises(ValueError, match=r"cannot decode <4096 bytes>: soundfile: Format not"):
        load(b"\0" * 4096)
    with pytest.raises(ValueError, match="empty"):
        load(b"")
    with pytest.raises(ValueError, match="empty"):
        load(io.BytesIO(b""))


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.wav"):
        load(tmp_path / "nothing.wav")
    with pytest.raises(IsADirectoryError):
        probe(tmp_path)
    with pytest.raises(TypeError, match="path, bytes or a binary file"):
        load(12345)  # type: ignore[arg-type]


def test_truncated_flac_fails_while_streaming(audio_files: dict[str, Path]) -> None:
    data = audio_files["flac_stereo"].read_bytes()
    info, blocks = stream(data[: len(data) // 2], block_frames=4096)
    assert info.frames == 88_200  # the header still promises the whole file
    with pytest.raises(ValueError, match=r"<\d+ bytes>: (decoding failed|truncated)"):
        list(blocks)


@pytest.mark.ffmpeg
@needs_ffmpeg
def test_truncated_mp4_fails(tmp_path: Path) -> None:
    """With the index at the front, truncation shows mid-stream; at the back, when probing."""
    raw = tmp_path / "s.raw"
    raw.write_bytes(known_signal(2).tobytes())
    for flags, where in ((["-movflags", "+faststart"], "after"), ([], "moov atom not found")):
        out = tmp_path / f"clip{len(flags)}.m4a"
        source: list[str | Path] = ["-f", "s16le", "-ar", "44100", "-ac", "2", "-i", raw]
        run_tool(["ffmpeg", "-nostdin", "-v", "error", "-y", *source, "-c:a", "aac", *flags, out])
        truncated = tmp_path / f"truncated{len(flags)}.m4a"
        truncated.write_bytes(out.read_bytes()[:20_000])
        with pytest.raises(ValueError, match=where):
            load(truncated)


@pytest.mark.ffmpeg
def test_missing_ffmpeg_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = tmp_path / "clip.m4a"
    clip.write_bytes(b"\0\0\0\x20ftypM4A " + b"\0" * 2000)
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on PATH
    hint = r"install ffmpeg \(e\.g\. apt-get install ffmpeg\) to read {} files"
    with pytest.raises(ValueError, match=hint.format(r"\.m4a")) as caught:
        probe(clip)
    assert "clip.m4a" in str(caught.value)
    assert "soundfile: Format not recognised" in str(caught.value)
    with pytest.raises(ValueError, match=hint.format("these")):
        load(clip.read_bytes())


# --- ffmpeg reads the one file it is given ----------------------------------------------------

SECRET_SECONDS = 1.5


def _playlists(target: str) -> dict[str, bytes]:
    """Text files that make an unconfined ffmpeg open ``target``: a concat list, an HLS playlist,
    and the same behind an extension that looks like audio."""
    concat = f"ffconcat version 1.0\nfile {target}\n".encode()
    hls = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n".encode()
    return {"list.ffconcat": concat, "list.m3u8": hls, "disguised.m4a": concat}


@pytest.fixture
def secret_beside(tmp_path: Path) -> Path:
    """A folder holding a real audio file (MPEG-TS, which HLS would play), as a server's files."""
    wav = tmp_path / "secret.wav"
    sf.write(wav, np.zeros(int(16000 * SECRET_SECONDS), np.int16), 16000, subtype="PCM_16")
    if tools_available("ffmpeg"):
        run_tool(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "mp2", str(tmp_path / "secret.ts")])
    return tmp_path


@pytest.mark.slow
@pytest.mark.ffmpeg
@needs_ffmpeg
@pytest.mark.parametrize("target", ["secret.wav", "secret.ts", "ABSOLUTE"])
def test_playlists_never_pull_in_other_files(secret_beside: Path, target: str) -> None:
    """Uploads (bytes, spooled into a private folder) and a user's own files (paths: the CLI,
    extraction) alike: a concat list or playlist naming another file is refused, with a message
    that names no server path and does not tell whether the named file exists."""
    name = str(secret_beside / "secret.wav") if target == "ABSOLUTE" else target
    for filename, text in _playlists(name).items():
        path = secret_beside / filename
        path.write_bytes(text)
        for source in (text, path, io.BytesIO(text)):
            with pytest.raises(audio.UndecodableAudioError, match="not an audio container") as caught:
                list(stream(source)[1])
            message = str(caught.value)
            assert "secret" not in message and "/tmp" not in message.replace(str(path), "")


@pytest.mark.ffmpeg
@needs_ffmpeg
def test_ffmpeg_messages_show_no_server_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload that ffmpeg cannot read is reported by its name, never by its spooled path."""
    _force_ffmpeg(monkeypatch)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(audio.UndecodableAudioError) as caught:
        probe(b"RIFF" + b"\0" * 60)
    assert "<64 bytes>" in str(caught.value) and str(tmp_path) not in str(caught.value)


def test_spooled_uploads_sit_alone_in_a_private_folder(
    monkeypatch: pytest.MonkeyPatch, audio_files: dict[str, Path]
) -> None:
    seen: list[tuple[list[str], int]] = []
    original = audio._probe_soundfile

    def spy(src: audio._Input) -> AudioInfo:
        if src.path is not None:
            folder = os.path.dirname(src.path)
            seen.append((os.listdir(folder), os.stat(folder).st_mode & 0o777))
        return original(src)

    monkeypatch.setattr(audio, "_probe_soundfile", spy)
    data = audio_files["wav16_stereo"].read_bytes()

    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            chunk = self.inner.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    probe(Unseekable())  # type: ignore[arg-type]
    assert seen == [(["input"], 0o700)]


# --- validate_waveform and to_mono ----------------------------------------------------------------


def test_validate_waveform_scales_int16_and_averages_channels() -> None:
    stereo = np.array([[32767, -32768], [16384, 0], [-1, 1]], dtype=np.int16)
    np.testing.assert_array_equal(validate_waveform(stereo, 16000), [-0.5 / 32768, 0.25, 0.0])
    mono = np.array([0.25, -1.5, 2.0], dtype=np.float32)  # floats are used as they are
    out = validate_waveform(mono, 44_100.0)  # type: ignore[arg-type]  # integral floats are fine
    assert out.dtype == np.float64 and out.shape == (3,)
    np.testing.assert_array_equal(out, [0.25, -1.5, 2.0])
    assert validate_waveform(np.zeros((0, 2)), 16000).shape == (0,)


@pytest.mark.parametrize(
    ("waveform", "match"),
    [
        (np.zeros((2, 48000)), r"looks like \(channels, samples\); pass waveform\.T"),
        (np.zeros((1, 16000)), r"pass waveform\.T"),
        (np.zeros((16000, 0)), "0 channels"),
        (np.zeros((2, 2, 2)), r"\(samples,\) or \(samples, channels\)"),
        (np.zeros(()), r"\(samples,\) or \(samples, channels\)"),
        (np.array([0.0, np.nan, 0.0]), "NaN or infinity .first at sample 1"),
        (np.array([[0.0, 0.0], [0.0, np.inf]]), "NaN or infinity"),
        (np.zeros(10, np.int32), r"int32 .* waveform / 2147483648"),
        (np.zeros(10, np.uint8), r"uint8 .* \(waveform - 128\) / 128"),
        (np.zeros(10, np.int64), "int64"),
        (np.zeros(10, np.complex64), "complex64 is not audio"),
        (np.zeros(10, bool), "bool is not audio"),
        (np.array([0.0, None]), "object is not audio"),
    ],
)
def test_validate_waveform_rejects(waveform: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_waveform(waveform, 16000)


@pytest.mark.parametrize("rate", [0, -1, 1e9, 16000.5, 999, 768_001, float("nan"), True, "16000"])
def test_validate_waveform_rejects_sample_rates(rate: object) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        validate_waveform(np.zeros(100), rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [16000, 16000.0, np.int64(8000), np.float32(48000), 1000, 768_000])
def test_validate_waveform_accepts_sample_rates(rate: int) -> None:
    assert validate_waveform(np.zeros(100), rate).shape == (100,)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hnp.arrays(np.int16, hnp.array_shapes(min_dims=2, max_dims=2, max_side=40)))
def test_int16_arrays_are_files_samples(x: np.ndarray) -> None:
    """A user's int16 array gives what a file with those samples gives."""
    expected = to_mono(x.astype(np.float32) / np.float32(32768))
    np.testing.assert_array_equal(validate_waveform(x, 16000), expected)


def test_to_mono_is_the_mean_over_channels_in_float64() -> None:
    x = np.array([[1, 2, 4], [0, 0, 3]], dtype=np.float32) / 32768
    np.testing.assert_array_equal(to_mono(x), np.mean(x.astype(np.float64), axis=1))
    assert to_mono(x).dtype == np.float64
    np.testing.assert_array_equal(to_mono(np.array([1.0, 2.0])), [1.0, 2.0])
    with pytest.raises(ValueError, match="samples, channels"):
        to_mono(np.zeros((2, 2, 2)))
