"""Decode: audio files and user arrays to the reference's samples (docs/vggish.md §1).

Files are read as 16-bit values / 32768, as the reference's ``soundfile.read(dtype="int16")``;
what libsndfile cannot open goes to an ``ffmpeg`` subprocess writing 16-bit PCM to a pipe, which
may open only the one file it is given (``file`` protocol, the demuxers of
:data:`FFMPEG_DEMUXERS`; bytes and streams are first copied into a private folder). Samples are
(samples, channels), streamed in blocks of bounded size.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import weakref
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO, BinaryIO, Literal

import numpy as np
import soundfile as sf

from vggish.errors import InvalidAudioError, UndecodableAudioError
from vggish.params import INT16_SCALE

AudioSource = str | os.PathLike[str] | bytes | BinaryIO
"""A file path, the bytes of a whole file, or a readable binary file object."""

MAX_CHANNELS = 64  # more than this in an array means its layout is (channels, samples)
MIN_SAMPLE_RATE = 1_000  # Hz
MAX_SAMPLE_RATE = 768_000  # Hz
DEFAULT_BLOCK_FRAMES = 1 << 18  # frames per streamed block (6 s at 44.1 kHz)

_INSTALL_FFMPEG = "install ffmpeg (e.g. apt-get install ffmpeg) to read {what} files"
_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})
_INEXACT_LENGTH_FORMATS = frozenset({"MP3"})  # libsndfile's frame count is an estimate
_SPOOL_CHUNK_BYTES = 1 << 20
_FINITE_CHECK_SAMPLES = 1 << 20  # samples checked for NaN/Inf at a time
_SPOOL_NAME = "input"  # the spooled copy's name inside its private folder (plus the suffix)
FFMPEG_DEMUXERS = (
    # audio containers and raw audio streams
    "aac,ac3,aiff,amr,amrnb,amrwb,ape,au,caf,dsf,dts,dtshd,eac3,flac,g722,g723_1,g729,gsm,"
    "loas,mlp,mp3,mpc,mpc8,oma,sbc,shn,tak,truehd,tta,voc,w64,wav,wv,xwma,"
    # containers that carry audio beside video ("mov" is mov/mp4/m4a/3gp, "matroska" also webm)
    "asf,avi,flv,matroska,mov,mpeg,mpegts,nut,ogg,rm"
)
"""The only demuxers ffmpeg may use: no playlists, ``concat``, image sequences or devices (they
open other files)."""
_PATHS = re.compile(r"(?:file:)?/[^\s'\"]*")  # absolute paths in ffmpeg's messages
# libsndfile's log line for a chunk shorter than its header says: "data : 64000 (should be 31979)"
_SHORT_CHUNK = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_CHUNK_SIZES = frozenset({0, 0xFFFFFFFF})  # written by encoders that stream to a pipe


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, as the chosen decoder reports it: ``frames`` is None where the container
    does not say exactly (MP3, ffmpeg); ``format`` is ``"CONTAINER/CODEC"``, e.g. ``"WAV/PCM_16"``."""

    sample_rate: int
    channels: int
    frames: int | None
    format: str
    backend: Literal["soundfile", "ffmpeg"]

    @property
    def duration(self) -> float | None:
        """Seconds, or None when ``frames`` is unknown."""
        return None if self.frames is None else self.frames / self.sample_rate


class _UnreadableError(Exception):
    """A backend cannot open the input; the message is its short reason."""


@dataclass(frozen=True)
class _Input:
    """A source made re-readable: a path, or a seekable binary file object and its start."""

    name: str  # for messages: the path's repr, "<123 bytes>" or the file object's name
    suffix: str  # the file name's extension ("" if none): a hint for ffmpeg and for messages
    path: str | None
    fileobj: IO[bytes] | None = None
    start: int = 0

    def rewound(self) -> IO[bytes]:
        assert self.fileobj is not None
        self.fileobj.seek(self.start)
        return self.fileobj

    def for_soundfile(self) -> str | IO[bytes] | _Window:
        """What libsndfile opens: the path, or the object seen from where the audio starts."""
        if self.path is not None:
            return self.path
        return self.rewound() if self.start == 0 else _Window(self.rewound(), self.start)


class _Window:
    """A seekable binary file seen from ``start`` on: libsndfile seeks to absolute offsets."""

    def __init__(self, raw: IO[bytes], start: int) -> None:
        self._raw, self._start = raw, start

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            offset += self._start
        return self._raw.seek(offset, whence) - self._start

    def tell(self) -> int:
        return self._raw.tell() - self._start


def probe(source: AudioSource) -> AudioInfo:
    """Read a file's rate, channels and length without decoding it.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: No decoder can read the input, or its rate or channels are out of range.
    """
    with contextlib.ExitStack() as cleanup:
        info, _ = _open(source, cleanup)
    return info


def load(source: AudioSource) -> tuple[np.ndarray, int]:
    """Decode a whole file: ``(samples, sample_rate)``, (frames, channels) float32 int16 / 32768.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: The input is not readable audio, or is truncated.
    """
    info, blocks = stream(source)
    if info.frames is None:
        return np.concatenate([np.zeros((0, info.channels), np.float32), *blocks]), info.sample_rate
    out = np.empty((info.frames, info.channels), np.float32)
    filled = 0
    for block in blocks:  # soundfile never reads past info.frames
        out[filled : filled + len(block)] = block
        filled += len(block)
    return out[:filled], info.sample_rate


def stream(
    source: AudioSource, block_frames: int = DEFAULT_BLOCK_FRAMES
) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """Decode a file block by block: ``(info, blocks)`` of (k <= block_frames, channels) float32.

    The file is probed now; closing or dropping the iterator closes the file, stops ffmpeg and
    removes temporary files. A file object is read from its position, restored after the last block.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: The input is not readable audio (now), or is corrupt (while iterating).
    """
    if isinstance(block_frames, bool) or not isinstance(block_frames, int) or block_frames < 1:
        raise ValueError(f"block_frames must be a positive integer, got {block_frames!r}")
    with contextlib.ExitStack() as cleanup:
        info, reader = _open(source, cleanup)
        owned = cleanup.pop_all()  # the iterator owns the temporary files from here on
    blocks = _owned_blocks(reader(block_frames), owned)
    weakref.finalize(blocks, owned.close)  # also cleans up if iteration never starts
    return info, blocks


def to_mono(x: np.ndarray) -> np.ndarray:
    """(samples, channels) or (samples,) -> (samples,) float64: the mean over channels."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        return x.copy()
    if x.ndim != 2:
        raise ValueError(f"expected shape (samples, channels), got {x.shape}")
    mono: np.ndarray = x.mean(axis=1)
    return mono


def validate_waveform(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """A user's (samples,) or (samples, channels) float or int16 array, checked, as mono float64.

    Raises:
        ValueError: Wrong dtype, shape or layout, NaN/Inf samples, or a bad sample rate.
    """
    return waveform_to_mono(check_waveform(waveform, sample_rate))


def check_waveform(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """:func:`validate_waveform`'s checks, without converting or copying the array."""
    check_sample_rate(sample_rate)
    x = np.asarray(waveform)
    _scaled_to_float(np.empty(0, x.dtype))  # refuses every dtype but float and int16
    if x.ndim not in (1, 2):
        raise InvalidAudioError(f"waveform must be (samples,) or (samples, channels); got shape {x.shape}")
    if x.ndim == 2:
        check_array_channels(x.shape)
    if x.dtype.kind == "f":
        for start in range(0, len(x), _FINITE_CHECK_SAMPLES):  # a bounded temporary mask
            check_finite(x[start : start + _FINITE_CHECK_SAMPLES], start)
    return x


def waveform_to_mono(x: np.ndarray) -> np.ndarray:
    """A checked array (or a run of its samples) -> (samples,) float64 mono."""
    x = _scaled_to_float(x)
    return to_mono(x) if x.ndim == 2 else np.array(x, dtype=np.float64)


def check_finite(x: np.ndarray, offset: int = 0) -> None:
    """Raises InvalidAudioError naming the first NaN or infinite frame (``x`` starts at ``offset``)."""
    finite = np.isfinite(x)
    if not finite.all():
        bad = offset + int(np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))[0])
        raise InvalidAudioError(
            f"the audio contains NaN or infinity (first at sample {bad}): samples must be finite numbers"
        )


def check_sample_rate(sample_rate: object) -> None:
    if isinstance(sample_rate, bool | np.bool_) or not isinstance(
        sample_rate, int | float | np.integer | np.floating
    ):
        raise InvalidAudioError(f"sample_rate must be a number of Hz, got {sample_rate!r}")
    rate = float(sample_rate)
    if not np.isfinite(rate) or rate != int(rate):
        raise InvalidAudioError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(
            f"sample_rate {sample_rate!r} Hz is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]"
        )


def _scaled_to_float(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind == "f":
        return x
    if x.dtype == np.int16:
        return x / INT16_SCALE
    if x.dtype.kind in "iu":
        bits = 8 * x.dtype.itemsize
        how = (
            f"waveform / {2 ** (bits - 1)}"
            if x.dtype.kind == "i"
            else f"(waveform - {2 ** (bits - 1)}) / {2 ** (bits - 1)}"
        )
        raise InvalidAudioError(
            f"{x.dtype} samples are ambiguous: scale them to floats in [-1, 1) first, e.g. "
            f"{how}, or pass int16 (divided by 32768)"
        )
    raise InvalidAudioError(f"waveform dtype {x.dtype} is not audio: pass float or int16 samples")


def check_array_channels(shape: tuple[int, ...]) -> None:
    if shape[1] == 0:
        raise InvalidAudioError(f"waveform has 0 channels (shape {shape})")
    if shape[1] > MAX_CHANNELS:
        raise InvalidAudioError(
            f"waveform of shape {shape} has {shape[1]} channels (more than {MAX_CHANNELS}): "
            "the array looks like (channels, samples); pass waveform.T"
        )


def _open(
    source: AudioSource, cleanup: contextlib.ExitStack
) -> tuple[AudioInfo, Callable[[int], Generator[np.ndarray]]]:
    """Probe with soundfile, then ffmpeg: the info and a block reader."""
    src = _prepare(source, cleanup)
    try:
        info = _probe_soundfile(src)
        return info, partial(_soundfile_blocks, src, info)
    except _UnreadableError as e:
        soundfile_reason = str(e)
    path = src.path if src.path is not None else _spool(src.rewound(), src, cleanup)
    try:
        info = _probe_ffmpeg(path, src)
    except _UnreadableError as e:
        raise UndecodableAudioError(
            f"cannot decode {src.name}: soundfile: {soundfile_reason}; ffmpeg: {e}"
        ) from None
    return info, partial(_ffmpeg_blocks, path, src, info)


def _prepare(source: AudioSource, cleanup: contextlib.ExitStack) -> _Input:
    """The source checked and made re-readable (non-seekable streams go to a temporary file)."""
    if isinstance(source, str | os.PathLike):
        return _prepare_path(os.fspath(source))
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise UndecodableAudioError("cannot decode <0 bytes>: the input is empty")
        return _Input(f"<{len(source)} bytes>", "", path=None, fileobj=io.BytesIO(source))
    if isinstance(source, io.TextIOBase):
        raise TypeError("audio file objects must be opened in binary mode ('rb'), not text mode")
    if not callable(getattr(source, "read", None)):
        raise TypeError(f"expected a path, bytes or a binary file object, got {type(source)}")
    name = getattr(source, "name", None)
    src = _Input(
        name=repr(name) if isinstance(name, str) else f"<{type(source).__name__} object>",
        suffix=_suffix(name) if isinstance(name, str) else "",
        path=None,
    )
    if not _is_seekable(source):
        return replace(src, path=_spool(source, src, cleanup))
    start = source.tell()
    cleanup.callback(_seek_quietly, source, start)  # put it back where we found it when done
    return replace(src, fileobj=source, start=start)


def _prepare_path(path: str) -> _Input:
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "No such audio file", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Is a directory, not an audio file", path)
    if os.path.getsize(path) == 0:
        raise UndecodableAudioError(f"cannot decode {path!r}: the file is empty (0 bytes)")
    return _Input(name=repr(path), suffix=_suffix(path), path=path)


def _suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if len(suffix) <= 8 and suffix[1:].isalnum() else ""


def _is_seekable(fileobj: BinaryIO) -> bool:
    try:
        return bool(fileobj.seekable()) and fileobj.tell() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def _spool(fileobj: IO[bytes], src: _Input, cleanup: contextlib.ExitStack) -> str:
    """Copy the rest of ``fileobj`` to a file alone in a private temporary folder (mode 0700)."""
    folder = tempfile.mkdtemp(prefix="vggish-audio-")
    cleanup.callback(shutil.rmtree, folder, True)
    path = os.path.join(folder, _SPOOL_NAME + src.suffix)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(fileobj, out, _SPOOL_CHUNK_BYTES)
        size = out.tell()
    if size == 0:
        raise UndecodableAudioError(f"cannot decode {src.name}: the input is empty (0 bytes)")
    return path


def _seek_quietly(fileobj: BinaryIO, position: int) -> None:
    with contextlib.suppress(OSError, ValueError):  # already closed by its owner
        fileobj.seek(position)


def _owned_blocks(blocks: Generator[np.ndarray], owned: contextlib.ExitStack) -> Iterator[np.ndarray]:
    try:
        yield from blocks
    finally:
        blocks.close()
        owned.close()


def _check_file_shape(name: str, sample_rate: int, channels: int) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise UndecodableAudioError(
            f"cannot decode {name}: {channels} channels (1 to {MAX_CHANNELS} allowed)"
        )
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise UndecodableAudioError(
            f"cannot decode {name}: sample rate {sample_rate} Hz is outside "
            f"[{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]"
        )


def _to_float32(block: np.ndarray) -> np.ndarray:
    """int16 -> float32 / 32768 (exact)."""
    out = block.astype(np.float32)
    out *= np.float32(1.0 / INT16_SCALE)
    return out


# --- soundfile backend --------------------------------------------------------------------------


def _open_soundfile(src: _Input) -> sf.SoundFile:
    try:
        return sf.SoundFile(src.for_soundfile())
    except (sf.SoundFileError, RuntimeError, TypeError) as e:
        raise _UnreadableError(_soundfile_reason(e)) from e


def _soundfile_reason(error: Exception) -> str:
    reason = getattr(error, "error_string", None)
    return str(reason if reason else error).strip().rstrip(".")


def _probe_soundfile(src: _Input) -> AudioInfo:
    with _open_soundfile(src) as f:
        _check_file_shape(src.name, f.samplerate, f.channels)
        # libsndfile shortens a chunk that runs past the end of the file and only logs it.
        for declared, present in _SHORT_CHUNK.findall(f.extra_info):
            if int(declared) > int(present) and int(declared) not in _UNKNOWN_CHUNK_SIZES:
                raise UndecodableAudioError(
                    f"cannot decode {src.name}: truncated: the header declares {declared} bytes of "
                    f"audio but the file holds {present}"
                )
        exact = f.format not in _INEXACT_LENGTH_FORMATS
        return AudioInfo(
            sample_rate=int(f.samplerate),
            channels=int(f.channels),
            frames=int(f.frames) if exact else None,
            format=f"{f.format}/{f.subtype}",
            backend="soundfile",
        )


def _soundfile_blocks(src: _Input, info: AudioInfo, block_frames: int) -> Generator[np.ndarray]:
    with _open_soundfile(src) as f:
        is_float = f.subtype in _FLOAT_SUBTYPES
        done = 0
        while (block := _read_block(f, block_frames, is_float, src.name, done)) is not None:
            yield block
            done += len(block)
    if info.frames is not None and done < info.frames:
        raise InvalidAudioError(
            f"cannot decode {src.name}: truncated: decoded {done} of {info.frames} frames"
        )


def _read_block(f: sf.SoundFile, frames: int, is_float: bool, name: str, done: int) -> np.ndarray | None:
    """One float32 block, or None at the end. Float PCM is quantised as clip(round(x * 32768))
    (libsndfile's int16 read would give only -1, 0, 1), so int16 data in a float file round-trips."""
    try:
        if is_float:
            x = f.read(frames, dtype="float64", always_2d=True)
            check_finite(x, done)
            data = np.clip(np.rint(x * INT16_SCALE), -32768, 32767).astype(np.int16)
        else:
            data = f.read(frames, dtype="int16", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:
        raise InvalidAudioError(
            f"cannot decode {name}: decoding failed after {done} frames: {_soundfile_reason(e)}"
        ) from e
    return _to_float32(data) if len(data) else None


# --- ffmpeg backend -----------------------------------------------------------------------------


def _ffmpeg_tools(src: _Input) -> tuple[str, str]:
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        raise _UnreadableError(f"not installed: {_INSTALL_FFMPEG.format(what=src.suffix or 'these')}")
    return ffmpeg, ffprobe


def _ffmpeg_reason(stderr: bytes, path: str, src: _Input) -> str:
    """The last two distinct lines of ffmpeg's stderr; the input's path shown as its name, any
    other path as ``<path>``."""
    text = stderr.decode(errors="replace")
    if "not on whitelist" in text:
        return (
            "not an audio container that the decoder accepts (playlists, concat lists, image "
            "sequences and devices are refused)"
        )
    text = text.replace(f"file:{path}", src.name).replace(path, src.name)
    lines: list[str] = []
    for raw in text.splitlines():
        line = re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", raw.strip())
        line = _PATHS.sub("<path>", line)
        if line and not line.startswith("Last message repeated") and line not in lines[-1:]:
            lines.append(line)
    return "; ".join(lines[-2:])[-300:] or "unknown error"


def _confined_input(path: str) -> list[str]:
    """ffmpeg's and ffprobe's options to read ``path`` and nothing else."""
    return ["-protocol_whitelist", "file", "-format_whitelist", FFMPEG_DEMUXERS, "-i", f"file:{path}"]


def _probe_ffmpeg(path: str, src: _Input) -> AudioInfo:
    _, ffprobe = _ffmpeg_tools(src)
    entries = "stream=codec_name,sample_rate,channels:format=format_name"
    command = [ffprobe, "-v", "error", *_confined_input(path), "-select_streams", "a:0"]
    command += ["-show_entries", entries, "-of", "json"]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if done.returncode != 0:
        raise _UnreadableError(_ffmpeg_reason(done.stderr, path, src))
    try:
        report = json.loads(done.stdout)
    except ValueError as e:
        reason = _ffmpeg_reason(done.stderr, path, src)
        raise _UnreadableError(f"unreadable ffprobe output ({reason})") from e
    streams = report.get("streams") or []
    if not streams:
        kind = report.get("format", {}).get("format_name", "unknown")
        raise _UnreadableError(f"no audio stream (container: {kind})")
    stream = streams[0]
    rate, channels = int(stream.get("sample_rate", 0)), int(stream.get("channels", 0))
    _check_file_shape(src.name, rate, channels)
    container = str(report.get("format", {}).get("format_name", "unknown")).split(",")[0]
    fmt = f"{container}/{stream.get('codec_name', 'unknown')}"
    return AudioInfo(rate, channels, frames=None, format=fmt, backend="ffmpeg")


def _ffmpeg_blocks(path: str, src: _Input, info: AudioInfo, block_frames: int) -> Generator[np.ndarray]:
    """Run ffmpeg to a 16-bit WAV pipe and yield its samples; always reap it."""
    ffmpeg, _ = _ffmpeg_tools(src)
    command = [ffmpeg, "-nostdin", "-v", "error", "-xerror", *_confined_input(path)]
    command += ["-map", "0:a:0", "-c:a", "pcm_s16le", "-f", "wav"]
    command += ["-bitexact", "-map_metadata", "-1", "pipe:1"]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)

        def failure() -> str | None:
            if proc.wait() == 0:
                return None
            stderr.seek(0)
            return _ffmpeg_reason(stderr.read(1 << 16), path, src) + f" (exit status {proc.returncode})"

        try:
            assert proc.stdout is not None
            yield from _pcm_blocks(proc.stdout, src.name, info, block_frames, failure)
        finally:
            if proc.poll() is None:
                proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
            proc.wait()


def _pcm_blocks(
    pipe: IO[bytes], name: str, info: AudioInfo, block_frames: int, failure: Callable[[], str | None]
) -> Iterator[np.ndarray]:
    """Check the piped WAV header against ``info``, then yield its data; ``failure`` waits for
    ffmpeg and says why it failed (None: it did not)."""
    header = _read_wav_header(pipe)
    if header is None:  # ffmpeg failed before writing any audio: report why
        pipe.close()  # so that ffmpeg cannot block on a full pipe while we wait
        why = failure() or "no 16-bit WAV header in its output"
        raise UndecodableAudioError(f"cannot decode {name} with ffmpeg: {why}")
    if header != (info.sample_rate, info.channels):
        raise InvalidAudioError(
            f"cannot decode {name}: ffmpeg decodes {header[1]} channels at {header[0]} Hz but "
            f"ffprobe reported {info.channels} channels at {info.sample_rate} Hz"
        )
    frame_bytes = 2 * info.channels
    done = 0
    while chunk := pipe.read(block_frames * frame_bytes):
        if len(chunk) % frame_bytes:
            raise InvalidAudioError(f"cannot decode {name}: ffmpeg's output ended inside a frame")
        yield _to_float32(np.frombuffer(chunk, dtype="<i2").reshape(-1, info.channels))
        done += len(chunk) // frame_bytes
    reason = failure()
    if reason:
        raise InvalidAudioError(f"cannot decode {name}: ffmpeg failed after {done} frames: {reason}")


def _read_wav_header(pipe: IO[bytes]) -> tuple[int, int] | None:
    """(sample_rate, channels) from a 16-bit WAV header, leaving ``pipe`` at the samples."""
    riff = pipe.read(12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:] != b"WAVE":
        return None
    fmt = b""
    while len(head := pipe.read(8)) == 8:
        chunk, size = head[:4], int.from_bytes(head[4:], "little")
        if chunk == b"data":
            break
        if size > 1 << 16:
            return None
        body = pipe.read(size + (size & 1))
        fmt = body if chunk == b"fmt " else fmt
    else:
        return None
    if len(fmt) < 16:
        return None
    channels, rate, _, _, bits = struct.unpack_from("<HIIHH", fmt, 2)
    return (rate, channels) if bits == 16 else None
