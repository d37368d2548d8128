"""A small labelled corpus for the classifier-head tests: real recordings and made signals.

Four classes: ``speech`` (alsa-utils' spoken channel names), ``alert`` (sound-theme-freedesktop's
alert sounds), ``noise`` (white, pink and brown noise) and ``tone`` (harmonic tones). Recordings
are cut into 1 s clips; the split keeps whole recordings (and seeds, and pitches) apart, so the
held-out clips come from sources the head never heard.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from vggish.audio.decode import load, to_mono
from vggish.audio.resample import resample

ALSA_DIR = Path("/usr/share/sounds/alsa")
FREEDESKTOP_DIR = Path("/usr/share/sounds/freedesktop/stereo")
CLIP_SECONDS = 1.0  # one VGGish example (0.975 s) per clip
CLIP_HOP_SECONDS = 0.25
MAX_CLIPS_PER_RECORDING = 4
RATE = 16_000  # Hz, of every clip (VGGish's rate: no resampling while embedding)
SPEECH_TRAIN = ("Front_Center", "Front_Left", "Rear_Center", "Rear_Left", "Side_Left")
SPEECH_TEST = ("Front_Right", "Rear_Right", "Side_Right")
ALERT_TRAIN = ("alarm-clock-elapsed", "phone-outgoing-busy", "service-login", "complete")
ALERT_TEST = ("service-logout", "phone-incoming-call", "trash-empty", "message-new-instant")
CLASSES = ("alert", "noise", "speech", "tone")


@dataclass(frozen=True)
class Clip:
    """One labelled clip: mono float32 samples at ``rate`` Hz, and a name."""

    name: str
    label: str
    samples: np.ndarray
    rate: int

    def wav(self) -> bytes:
        """The clip as 16-bit WAV bytes."""
        buffer = io.BytesIO()
        sf.write(buffer, self.samples, self.rate, format="WAV", subtype="PCM_16")
        return buffer.getvalue()


def available() -> bool:
    """Whether the recordings the corpus needs are installed."""
    names = [ALSA_DIR / f"{n}.wav" for n in SPEECH_TRAIN + SPEECH_TEST]
    names += [FREEDESKTOP_DIR / f"{n}.oga" for n in ALERT_TRAIN + ALERT_TEST]
    return all(p.is_file() for p in names)


def _cut(path: Path, label: str) -> list[Clip]:
    """Up to 4 clips of 1 s, 0.25 s apart, of a recording resampled to 16 kHz (the first one
    zero-padded when the recording is shorter than 1 s)."""
    x, native = load(path)
    mono = resample(to_mono(x).astype(np.float64), native, RATE).astype(np.float32)
    size, hop = round(CLIP_SECONDS * RATE), round(CLIP_HOP_SECONDS * RATE)
    starts = range(0, max(1, mono.size - size + 1), hop)[:MAX_CLIPS_PER_RECORDING]
    clips = []
    for k, start in enumerate(starts):
        piece = mono[start : start + size]
        piece = np.pad(piece, (0, size - piece.size))
        clips.append(Clip(f"{path.stem}-{k}.wav", label, piece, RATE))
    return clips


def _noise(seed: int) -> Clip:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(round(CLIP_SECONDS * RATE))
    colour = seed % 3  # 0 white, 1 pink-ish, 2 brown
    spectrum = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(white.size, 1 / RATE), 20.0)
    spectrum /= f ** (colour / 2)
    x = np.fft.irfft(spectrum, white.size)
    x = 0.3 * x / np.abs(x).max()
    return Clip(f"noise-{seed}.wav", "noise", x.astype(np.float32), RATE)


def _tone(pitch: float) -> Clip:
    t = np.arange(round(CLIP_SECONDS * RATE)) / RATE
    x = sum(0.3 / k * np.sin(2 * np.pi * k * pitch * t) for k in (1, 2, 3))
    return Clip(f"tone-{pitch:g}.wav", "tone", np.asarray(x, dtype=np.float32), RATE)


def corpus() -> tuple[list[Clip], list[Clip]]:
    """(training clips, held-out clips), every class in both."""
    train: list[Clip] = []
    test: list[Clip] = []
    for names, out in ((SPEECH_TRAIN, train), (SPEECH_TEST, test)):
        for n in names:
            out.extend(_cut(ALSA_DIR / f"{n}.wav", "speech"))
    for names, out in ((ALERT_TRAIN, train), (ALERT_TEST, test)):
        for n in names:
            out.extend(_cut(FREEDESKTOP_DIR / f"{n}.oga", "alert"))
    train += [_noise(seed) for seed in range(9)]
    test += [_noise(seed) for seed in range(100, 106)]
    train += [_tone(p) for p in (110, 165, 220, 330, 440, 660, 880, 1320)]
    test += [_tone(p) for p in (130, 250, 500, 1000, 1500)]
    return train, test
