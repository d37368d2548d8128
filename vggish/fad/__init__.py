"""Fréchet Audio Distance: how far a set of audio is from a background set, as the distance
between Gaussians fitted to their VGGish embeddings. A set's statistics (:class:`SetStats`: mean,
covariance, count, and the weights and mode that made them) are accumulated in one bounded-memory
pass through the one pipeline (:func:`embed_set`), saved and loaded as ``.npz``
(:func:`save_stats`, :func:`load_stats`), and compared by :func:`fad` with Google's
:func:`frechet_distance`. Two modes: ``default`` (the project's standard embeddings of any audio)
and ``google`` (exactly what Google's ``frechet_audio_distance`` computes from 16 kHz WAV files;
:mod:`vggish.fad.google`). :func:`contributions` tells which evaluation files move the score
most; :func:`fad_infinity` is fadtk's FAD-infinity.

>>> model = vggish.load_model()
>>> background = embed_set(model, ["bg/a.wav", "bg/b.wav"]).stats(model.weights_info["sha256"], "default")
"""

from __future__ import annotations

from vggish.fad.compute import SetResult, embed_set, embed_set_parallel
from vggish.fad.distance import (
    Contribution,
    FadInfinity,
    contributions,
    fad,
    fad_infinity,
    frechet_distance,
)
from vggish.fad.stats import Mode, SetStats, Sums, check_same_origin, load_stats, save_stats

__all__ = [
    "Contribution",
    "FadInfinity",
    "Mode",
    "SetResult",
    "SetStats",
    "Sums",
    "check_same_origin",
    "contributions",
    "embed_set",
    "embed_set_parallel",
    "fad",
    "fad_infinity",
    "frechet_distance",
    "load_stats",
    "save_stats",
]
