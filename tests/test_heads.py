"""vggish.heads: training, scores against a NumPy reference, cross-validation, determinism,
safetensors round trips and validation; on real recordings with random VGGish weights."""

from __future__ import annotations

import io
import itertools
import json
import struct

import heads_corpus
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load as load_safetensors

import vggish
from vggish import heads
from vggish.runtime import Runtime


def blobs(n_per_class: tuple[int, ...], seed: int = 0, spread: float = 1.0) -> tuple[np.ndarray, list[str]]:
    """Gaussian clusters in 128-d, one per class (labels c0, c1...)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(n_per_class), 128)) * 2
    x = np.concatenate(
        [c + spread * rng.standard_normal((n, 128)) for c, n in zip(centres, n_per_class, strict=True)]
    )
    labels = [f"c{k}" for k, n in enumerate(n_per_class) for _ in range(n)]
    return x.astype(np.float32), labels


def reference_scores(head_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """softmax of the exported tensors applied to x, written independently of vggish.heads."""
    t = load_safetensors(head_bytes)
    z = (x.astype(np.float64) - t["norm.mean"]) / t["norm.std"]
    if "hidden.weight" in t:
        z = np.maximum(z @ t["hidden.weight"].T + t["hidden.bias"], 0)
    logits = z @ t["out.weight"].T + t["out.bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def metadata(data: bytes) -> dict[str, str]:
    (n,) = struct.unpack("<Q", data[:8])
    meta: dict[str, str] = json.loads(data[8 : 8 + n])["__metadata__"]
    return meta


@pytest.fixture(scope="module")
def corpus_embeddings(random_model: Runtime) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Mean example embeddings of the corpus clips (library front end + model, one batch)."""
    if not heads_corpus.available():
        pytest.skip("alsa / freedesktop sounds missing")
    train, test = heads_corpus.corpus()
    examples = [vggish.waveform_to_examples(c.samples, c.rate) for c in train + test]
    with torch.inference_mode():
        out = random_model(torch.from_numpy(np.concatenate(examples))).numpy()
    bounds = np.cumsum([0] + [e.shape[0] for e in examples])
    means = np.stack([out[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
    return {
        "train": (means[: len(train)], [c.label for c in train]),
        "test": (means[len(train) :], [c.label for c in test]),
    }


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_real_recordings_held_out_far_above_chance(
    corpus_embeddings: dict[str, tuple[np.ndarray, list[str]]], kind: heads.HeadKind
) -> None:
    x, y = corpus_embeddings["train"]
    head, metrics = heads.train(x, y, kind=kind)
    assert head.classes == heads_corpus.CLASSES
    assert metrics.folds == 5 and metrics.cv_accuracy is not None and metrics.cv_accuracy > 0.7
    xt, yt = corpus_embeddings["test"]
    predicted = np.array(head.classes)[head.scores(xt).argmax(axis=1)]
    assert np.mean(predicted == np.array(yt)) >= 0.6  # chance is 0.25


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_scores_equal_numpy_softmax_of_exported_tensors(kind: heads.HeadKind) -> None:
    x, y = blobs((6, 7, 5), seed=1, spread=3.0)
    head, _ = heads.train(x, y, kind=kind)
    new, _ = blobs((4, 4, 4), seed=2, spread=3.0)
    scores = head.scores(new)
    assert scores.dtype == np.float32 and scores.shape == (12, 3)
    np.testing.assert_allclose(scores, reference_scores(heads.to_safetensors(head), new), atol=1e-6)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_export_import_round_trip_gives_identical_scores(kind: heads.HeadKind) -> None:
    x, y = blobs((5, 5), seed=3)
    head, metrics = heads.train(x, y, kind=kind)
    data = heads.to_safetensors(head)
    back = heads.from_safetensors(data)
    assert (back.kind, back.classes, back.num_examples, back.metrics) == (kind, ("c0", "c1"), 10, metrics)
    np.testing.assert_array_equal(back.scores(x), head.scores(x))
    meta = metadata(data)
    assert meta["format"] == "vggish-head" and meta["format_version"] == "1" and meta["kind"] == kind
    assert json.loads(meta["classes"]) == ["c0", "c1"]


def test_training_is_deterministic() -> None:
    x, y = blobs((6, 3, 9), seed=4, spread=4.0)
    for kind in ("linear", "mlp"):
        a, ma = heads.train(x, y, kind=kind)  # type: ignore[arg-type]
        b, mb = heads.train(x, y, kind=kind)  # type: ignore[arg-type]
        assert ma == mb
        for key, value in a.weights.items():
            np.testing.assert_array_equal(b.weights[key], value)
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.std, b.std)


def test_normalisation_is_the_training_sets() -> None:
    x, y = blobs((4, 4), seed=5)
    x[:, 3] = 7.0  # a constant feature is centred, not divided by zero
    head, _ = heads.train(x, y)
    np.testing.assert_allclose(head.mean, x.mean(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-6)
    expected_std = x.std(axis=0, dtype=np.float64)
    expected_std[3] = 1.0
    np.testing.assert_allclose(head.std, expected_std, rtol=1e-5)


def test_class_weighting_keeps_a_rare_class() -> None:
    x, y = blobs((60, 4), seed=6, spread=6.0)  # heavily overlapping, 15:1
    head, _ = heads.train(x, y)
    xt, yt = blobs((200, 200), seed=6, spread=6.0)
    predicted = np.array(head.classes)[head.scores(xt).argmax(axis=1)]
    rare_recall = np.mean(predicted[np.array(yt) == "c1"] == "c1")
    assert rare_recall > 0.5  # an unweighted loss predicts the common class almost always


def test_cross_validation_folds() -> None:
    x, y = blobs((3, 8, 2), seed=7)
    _, metrics = heads.train(x, y)
    assert metrics.folds == 2 and metrics.cv_accuracy is not None
    _, metrics = heads.train(*blobs((9, 12), seed=7))
    assert metrics.folds == 5
    _, metrics = heads.train(*blobs((1, 5), seed=7))
    assert metrics.folds == 0 and metrics.cv_accuracy is None and metrics.train_accuracy == 1.0


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(2, 9), min_size=2, max_size=5), seed=st.integers(0, 100))
def test_stratified_folds_partition_and_hold_every_class(counts: list[int], seed: int) -> None:
    y = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(y)
    folds = min(5, min(counts))
    parts = heads.stratified_folds(y, folds, seed)
    assert len(parts) == folds
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(y.size))
    for part in parts:
        assert set(y[part]) == set(range(len(counts)))


@pytest.mark.parametrize(
    ("x", "labels", "match"),
    [
        (np.zeros((4, 128)), ["a"] * 4, "at least 2 classes"),
        (np.zeros((4, 128)), ["a", "b", "a"], "one label per clip"),
        (np.full((4, 128), np.nan), ["a", "b"] * 2, "NaN"),
        (np.zeros((4, 127)), ["a", "b"] * 2, r"\(N, 128\)"),
        (np.zeros(128), ["a"], r"\(N, 128\)"),
        (np.zeros((2, 128)), ["a", " "], "non-empty"),
        (np.full((2, 128), 1e300), ["a", "b"], "within"),
    ],
)
def test_bad_training_sets_raise(x: np.ndarray, labels: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        heads.train(x, labels)


def test_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="kind"):
        heads.train(*blobs((2, 2)), kind="svm")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a", "Dog_bark-2.v1", "x" * 64])
def test_good_names(name: str) -> None:
    assert heads.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "a/b", "é", "a\n", "../x"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="head name"):
        heads.validate_name(name)


def test_from_safetensors_never_unpickles() -> None:
    buffer = io.BytesIO()
    torch.save({"out.weight": torch.zeros(2, 128)}, buffer)
    with pytest.raises(ValueError, match="not a safetensors file"):
        heads.from_safetensors(buffer.getvalue())
    with pytest.raises(ValueError, match="not a safetensors file"):
        heads.from_safetensors(b"\x00" * 4)
