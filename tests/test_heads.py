"""vggish.heads: training (against a NumPy Adam written here), scores against a NumPy reference,
cross-validation, determinism, safetensors round trips and validation, files written before
training moved to torch.optim; on real recordings with random VGGish weights."""

from __future__ import annotations

import io
import itertools
import json
import struct
import subprocess
import sys
from pathlib import Path

import heads_corpus
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load as load_safetensors

import vggish
from vggish import heads
from vggish.errors import CancelledError, ConflictError, InvalidInputError
from vggish.heads import training
from vggish.network.runtime import Runtime


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


@pytest.mark.parametrize(
    ("counts", "fits_in_turn"),
    [((6, 6), 1), ((1400, 1400), 6)],  # 6 x 12 rows: fitted together; 6 x 2800 x 128 > MAX_TOGETHER
)
def test_cancelled_is_asked_before_every_step_and_stops_training(
    counts: tuple[int, int], fits_in_turn: int
) -> None:
    x, y = blobs(counts, seed=6, spread=3.0)
    asked = 0

    def never() -> bool:
        nonlocal asked
        asked += 1
        return False

    if fits_in_turn == 1:
        _, metrics = heads.train(x, y, cancelled=never)
        assert metrics.folds == 5
        assert asked == heads.TRAIN_STEPS  # the final fit and the folds' together
    stops = (0, 7, heads.TRAIN_STEPS + 3)[: 2 if fits_in_turn == 1 else 3]  # (and in a fold's fit)
    for stop_after in stops:
        asked = 0

        def later(limit: int = stop_after) -> bool:
            nonlocal asked
            asked += 1
            return asked > limit

        with pytest.raises(CancelledError, match="stopped"):
            heads.train(x, y, kind="mlp", cancelled=later)
        assert asked == stop_after + 1  # not asked again once it said stop


def test_fits_in_turn_give_the_heads_fitted_together() -> None:
    """The final head and the folds' fitted one after another (large sets) or stacked (small
    ones): the same heads and metrics but for the summation order."""
    x, labels = blobs((7, 5, 9), seed=13, spread=2.0)
    together, metrics = heads.train(x, labels, kind="mlp")
    before = training.MAX_TOGETHER
    try:
        training.MAX_TOGETHER = 0  # every fit in turn
        in_turn, metrics_in_turn = heads.train(x, labels, kind="mlp")
    finally:
        training.MAX_TOGETHER = before
    assert metrics_in_turn == metrics
    for key, value in together.weights.items():
        np.testing.assert_allclose(in_turn.weights[key], value, rtol=1e-5, atol=1e-6)


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


# ---------------------------------------------------------------------------------------------
# Validation of imported files: every malformed input is an InvalidInputError, nothing else.

GOOD_HEAD, _ = heads.train(*blobs((3, 3), seed=8))
GOOD_META = metadata(heads.to_safetensors(GOOD_HEAD))
GOOD_TENSORS = load_safetensors(heads.to_safetensors(GOOD_HEAD))
SHA = "3f1c2a9b8d7e" + "0" * 52


def build(meta: object, tensors: dict[str, np.ndarray] | None = None) -> bytes:
    """A safetensors file written here (not by the library), so metadata may be anything."""
    dtypes = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int32): "I32"}
    header: dict[str, object] = {}
    payload = b""
    for name, array in (GOOD_TENSORS if tensors is None else tensors).items():
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": dtypes[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [len(payload), len(payload) + len(raw)],
        }
        payload += raw
    header["__metadata__"] = meta
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + payload


def test_build_writes_what_the_library_reads() -> None:
    back = heads.from_safetensors(build(GOOD_META))
    assert back.classes == GOOD_HEAD.classes and back.metrics == GOOD_HEAD.metrics
    x, _ = blobs((2, 2), seed=9)
    np.testing.assert_array_equal(back.scores(x), GOOD_HEAD.scores(x))


def with_meta(**changes: str | None) -> dict[str, str]:
    meta = dict(GOOD_META)
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    return meta


METRICS = '{"cv_accuracy": 0.5, "train_accuracy": 1.0, "folds": 3}'
BAD_METADATA = [
    ({"metrics": '{"cv_accuracy": 1e400, "train_accuracy": 1.0, "folds": 3}'}, "cv_accuracy"),
    ({"metrics": '{"cv_accuracy": 0.5, "train_accuracy": NaN, "folds": 3}'}, "train_accuracy"),
    ({"metrics": '{"cv_accuracy": 0.5, "train_accuracy": Infinity, "folds": 3}'}, "train_accuracy"),
    ({"metrics": '{"cv_accuracy": 1.5, "train_accuracy": 1.0, "folds": 3}'}, r"\[0, 1\]"),
    ({"metrics": '{"cv_accuracy": -0.1, "train_accuracy": 1.0, "folds": 3}'}, r"\[0, 1\]"),
    ({"metrics": '{"cv_accuracy": "0.5", "train_accuracy": 1.0, "folds": 3}'}, "cv_accuracy"),
    ({"metrics": '{"cv_accuracy": true, "train_accuracy": 1.0, "folds": 3}'}, "cv_accuracy"),
    ({"metrics": '{"cv_accuracy": 0.5, "train_accuracy": 1.0, "folds": 1' + "0" * 30 + "}"}, "folds"),
    ({"metrics": '{"cv_accuracy": 0.5, "train_accuracy": 1.0, "folds": 1' + "0" * 5000 + "}"}, "JSON"),
    ({"metrics": '{"cv_accuracy": 0.5, "train_accuracy": 1.0, "folds": -2}'}, "folds"),
    ({"metrics": '{"cv_accuracy": 0.5, "train_accuracy": 1.0, "folds": 1}'}, "folds"),
    ({"metrics": '{"cv_accuracy": 0.5, "train_accuracy": 1.0, "folds": 2.0}'}, "folds"),
    ({"metrics": '{"cv_accuracy": 0.5, "train_accuracy": 1.0, "folds": false}'}, "folds"),
    ({"metrics": '{"cv_accuracy": 0.5, "train_accuracy": 1.0, "folds": 0}'}, "null exactly"),
    ({"metrics": '{"cv_accuracy": null, "train_accuracy": 1.0, "folds": 3}'}, "null exactly"),
    ({"metrics": '{"cv_accuracy": 0.5, "train_accuracy": 1.0}'}, "JSON object of"),
    ({"metrics": METRICS[:-1] + ', "extra": 1}'}, "JSON object of"),
    ({"metrics": "[0.5, 1.0, 3]"}, "JSON object of"),
    ({"metrics": "{"}, "not valid JSON"),
    ({"metrics": "[" * 100_000 + "]" * 100_000}, "not valid JSON"),
    ({"num_examples": "1" + "0" * 30}, "num_examples"),
    ({"num_examples": str(2**63)}, "num_examples"),
    ({"num_examples": "-1"}, "num_examples"),
    ({"num_examples": "1e3"}, "num_examples"),
    ({"num_examples": " 7"}, "num_examples"),
    ({"num_examples": "٣"}, "num_examples"),  # an Arabic-Indic digit: int() would take it
    ({"classes": '["only"]'}, "2 to"),
    ({"classes": json.dumps([f"c{i}" for i in range(heads.MAX_CLASSES + 1)])}, "2 to"),
    ({"classes": json.dumps(["a", "x" * (heads.MAX_CLASS_CHARS + 1)])}, "at most 256"),
    ({"classes": json.dumps(["a", "b\nc"])}, "control"),
    ({"classes": json.dumps(["a", "nul\x00"])}, "control"),
    ({"classes": '["a", "\\ud800"]'}, "surrogate"),
    ({"classes": '["a", "a"]'}, "distinct"),
    ({"classes": '["a", " "]'}, "non-empty"),
    ({"classes": '["a", 2]'}, "non-empty"),
    ({"classes": '{"a": 1, "b": 2}'}, "JSON list"),
    ({"classes": "[" * 100_000}, "not valid JSON"),
    ({"classes": None}, "not valid JSON"),
    ({"kind": "svm"}, "kind"),
    ({"kind": None}, "kind"),
    ({"format": "other"}, "format"),
    ({"format_version": "2"}, "format_version"),
    ({"features": "[]"}, "JSON object"),
    ({"features": '{"weights_sha256": "ABC"}'}, "weights_sha256"),
    ({"features": json.dumps({"weights_sha256": SHA.upper()})}, "weights_sha256"),
    ({"features": '{"weights_sha256": 7}'}, "weights_sha256"),
    ({"features": '{"hop_seconds": 0.005}'}, "multiple of 0.01"),
    ({"features": '{"hop_seconds": -0.96}'}, "multiple of 0.01"),
    ({"features": '{"hop_seconds": 1e400}'}, "multiple of 0.01"),
    ({"features": '{"hop_seconds": NaN}'}, "multiple of 0.01"),
    ({"features": '{"hop_seconds": 1' + "0" * 400 + "}"}, "hop_seconds"),  # float() overflows
    ({"features": '{"hop_seconds": "0.96"}'}, "hop_seconds must be a number"),
    ({"features": '{"hop_seconds": true}'}, "hop_seconds must be a number"),
    ({"features": '{"pad": 1}'}, "pad"),
    ({"features": '{"resampler": "best"}'}, "resampler"),
    ({"features": '{"sha": "x"}'}, "unknown keys"),
]


@pytest.mark.parametrize(("changes", "match"), BAD_METADATA)
def test_malformed_metadata_is_refused_with_a_reason(changes: dict[str, str | None], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        heads.from_safetensors(build(with_meta(**changes)))


def test_the_limits_themselves_are_accepted() -> None:
    labels = [f"{i:03d}" + "é" * (heads.MAX_CLASS_CHARS - 3) for i in range(heads.MAX_CLASSES)]
    rng = np.random.default_rng(0)
    tensors = {
        "norm.mean": GOOD_TENSORS["norm.mean"],
        "norm.std": GOOD_TENSORS["norm.std"],
        "out.weight": rng.standard_normal((heads.MAX_CLASSES, 128)).astype(np.float32),
        "out.bias": np.zeros(heads.MAX_CLASSES, np.float32),
    }
    meta = with_meta(classes=json.dumps(labels), num_examples=str(heads.MAX_NUM_EXAMPLES))
    head = heads.from_safetensors(build(meta, tensors))
    assert head.classes == tuple(labels) and head.num_examples == 2**63 - 1
    again = heads.from_safetensors(heads.to_safetensors(head))
    assert again.classes == head.classes


def scaled(**arrays: np.ndarray) -> dict[str, np.ndarray]:
    return {**GOOD_TENSORS, **{k.replace("_", "."): v for k, v in arrays.items()}}


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        (scaled(out_bias=np.zeros(2, np.float64)), "float32"),
        (scaled(out_bias=np.zeros(3, np.float32)), "shape"),
        (scaled(out_weight=np.zeros((2, 128), np.int32)), "float32"),
        ({k: v for k, v in GOOD_TENSORS.items() if k != "out.bias"}, "missing"),
        ({**GOOD_TENSORS, "hidden.weight": np.zeros((64, 128), np.float32)}, "unexpected"),
        (scaled(out_bias=np.array([0, np.nan], np.float32)), "NaN"),
        (scaled(norm_std=np.zeros(128, np.float32)), "norm.std"),
        (scaled(norm_std=np.full(128, 1e-7, np.float32)), "at least"),
        (scaled(norm_mean=np.full(128, 2e6, np.float32)), "beyond"),
        (scaled(out_weight=np.full((2, 128), 2e4, np.float32)), "beyond"),
    ],
)
def test_malformed_tensors_are_refused(tensors: dict[str, np.ndarray], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        heads.from_safetensors(build(GOOD_META, tensors))


def test_malformed_headers_are_refused() -> None:
    good = build(GOOD_META)
    (n,) = struct.unpack("<Q", good[:8])
    cases = {
        b"": "0 bytes",
        good[:7]: "7 bytes",
        struct.pack("<Q", 2**63) + good[8:]: "declares",
        struct.pack("<Q", heads.MAX_HEADER_BYTES + 8) + b" " * (heads.MAX_HEADER_BYTES + 16): "header over",
        struct.pack("<Q", 4) + b"\xff\xfe{}": "UTF-8",
        struct.pack("<Q", 8) + b"[1, 2]  ": "not a JSON object",
        struct.pack("<Q", 8) + b'{"a": 1 ': "not valid JSON",
        build(None): "metadata is missing",
        build({"format": 1}): "not strings",
        build([1, 2]): "metadata is missing",
        good[: 8 + n] + good[8 + n + 4 :]: "not a safetensors file",  # payload short by 4 bytes
    }
    for data, match in cases.items():
        with pytest.raises(InvalidInputError, match=match):
            heads.from_safetensors(data)
    with pytest.raises(InvalidInputError, match="bytes"):
        heads.from_safetensors("not bytes")  # type: ignore[arg-type]


def only_invalid_input(data: bytes) -> None:
    """from_safetensors returns a head or raises InvalidInputError: never anything else."""
    try:
        head = heads.from_safetensors(data)
    except InvalidInputError:
        return
    assert np.isfinite(head.scores(np.zeros((1, 128), np.float32))).all()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_are_invalid_input(data: bytes) -> None:
    only_invalid_input(data)
    only_invalid_input(struct.pack("<Q", len(data)) + data)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, 2**63, -(2**63) - 1, 1e308])
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
META_TEXT = st.one_of(
    st.text(max_size=40),
    JSON_VALUES.map(json.dumps),
    st.builds(
        lambda v: json.dumps({"cv_accuracy": v[0], "train_accuracy": v[1], "folds": v[2]}),
        st.tuples(JSON_VALUES, JSON_VALUES, JSON_VALUES),
    ),
    st.builds(
        json.dumps,
        st.dictionaries(
            st.sampled_from(["weights_sha256", "hop_seconds", "pad", "resampler"]), JSON_VALUES, max_size=4
        ),
    ),
    st.lists(st.text(max_size=8), max_size=6).map(json.dumps),
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["format", "format_version", "kind", "classes", "num_examples", "metrics", "features"]
        ),
        META_TEXT,
        max_size=4,
    ),
    st.sampled_from([None, "linear", "mlp"]),
)
@pytest.mark.slow
def test_hypothesis_metadata_is_a_head_or_invalid_input(changes: dict[str, str], kind: str | None) -> None:
    meta = {**GOOD_META, **changes}
    if kind is not None:
        meta["kind"] = kind
    only_invalid_input(build(meta))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_files_are_a_head_or_invalid_input(data: st.DataObject) -> None:
    raw = bytearray(heads.to_safetensors(GOOD_HEAD))
    (n,) = struct.unpack("<Q", raw[:8])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, 8 + n + 16))  # the header, mostly: that is where parsing happens
        raw[pos : pos + 1] = data.draw(st.binary(max_size=3))
    only_invalid_input(bytes(raw))


def test_scores_of_a_head_at_every_limit_stay_finite() -> None:
    tensors = {
        "norm.mean": np.full(128, -heads.MAX_ABS_FEATURE, np.float32),
        "norm.std": np.full(128, heads.MIN_STD, np.float32),
        "hidden.weight": np.full((64, 128), heads.MAX_ABS_WEIGHT, np.float32),
        "hidden.bias": np.full(64, heads.MAX_ABS_WEIGHT, np.float32),
        "out.weight": np.stack([np.full(64, heads.MAX_ABS_WEIGHT), np.full(64, -heads.MAX_ABS_WEIGHT)]),
        "out.bias": np.zeros(2, np.float32),
    }
    tensors["out.weight"] = tensors["out.weight"].astype(np.float32)
    head = heads.from_safetensors(build(with_meta(kind="mlp"), tensors))
    x = np.full((2, 128), heads.MAX_ABS_FEATURE, np.float32)
    x[1] = -heads.MAX_ABS_FEATURE
    scores = head.scores(x)
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores[0], [1.0, 0.0])
    with pytest.raises(InvalidInputError, match="within"):
        head.scores(x * 1.01)


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError, match=r"not \. or \.\."):
        heads.validate_name(name)
    assert heads.validate_name("..." if name == ".." else ".a") in ("...", ".a")


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (["a", "b\tc"], "control"),
        (["a", "x" * 257], "at most 256"),
        ([f"c{i}" for i in range(1001)], "at most 1000"),
    ],
)
def test_training_refuses_labels_an_import_would(labels: list[str], match: str) -> None:
    x = np.random.default_rng(0).standard_normal((len(labels), 128)).astype(np.float32)
    with pytest.raises(InvalidInputError, match=match):
        heads.train(x, labels)


# ---------------------------------------------------------------------------------------------
# Identity of a head's features: recorded, exported, compared.

SPEC = heads.FeatureSpec(SHA, 0.96, False, "reference")


def test_identity_round_trips_through_files_and_old_files_are_unknown() -> None:
    head, _ = heads.train(*blobs((3, 3), seed=8), features=SPEC)
    data = heads.to_safetensors(head)
    assert json.loads(metadata(data)["features"]) == {
        "weights_sha256": SHA,
        "hop_seconds": 0.96,
        "pad": False,
        "resampler": "reference",
    }
    assert heads.from_safetensors(data).features == SPEC
    old = heads.from_safetensors(build(with_meta(features=None)))  # as written before identities
    assert old.features == heads.UNKNOWN_FEATURES and old.features.unknown
    partial = heads.from_safetensors(build(with_meta(features='{"weights_sha256": "random"}')))
    assert partial.features == heads.FeatureSpec(weights_sha256="random")


def test_for_model_names_the_weights_and_options(random_model: Runtime) -> None:
    spec = heads.FeatureSpec.for_model(random_model, vggish.EmbedOptions(hop_seconds=0.48, pad=True))
    assert spec == heads.FeatureSpec("random", 0.48, True, "reference")


def test_check_compatible_binds_a_head_to_its_weights_only() -> None:
    assert heads.check_compatible(SPEC, SPEC) is None
    other = heads.FeatureSpec("random", 0.48, False, "reference")
    with pytest.raises(heads.WeightsMismatchError) as caught:
        heads.check_compatible(SPEC, other, name="kinds")
    message = str(caught.value)
    assert "head 'kinds'" in message and "weights 3f1c2a9b8d7e" in message and "weights random" in message
    assert "force=true" in message and "--force" in message and "hop" not in message
    assert caught.value.differences == ["weights"]
    assert isinstance(caught.value, ConflictError)
    warning = heads.check_compatible(SPEC, other, force=True)
    assert warning is not None and "forced" in warning
    # hop and pad choose which examples exist, not what an example's embedding is: never compared
    for used in (heads.FeatureSpec(SHA, 0.48, True, "reference"), heads.FeatureSpec(SHA, 0.1, None, None)):
        assert heads.check_compatible(SPEC, used) is None
    # another resampler: a warning, never a refusal
    resampled = heads.check_compatible(SPEC, heads.FeatureSpec(SHA, 0.96, False, "fast"), name="kinds")
    assert resampled is not None and "'reference' resampler" in resampled and "'fast'" in resampled
    # unknown weights on the head's side: never refused, but said; on the used side: not compared
    unknown = heads.check_compatible(heads.UNKNOWN_FEATURES, other)
    assert unknown is not None and "does not record its weights" in unknown
    assert heads.check_compatible(SPEC, heads.FeatureSpec(pad=True, hop_seconds=0.5)) is None


@pytest.mark.parametrize(
    "fields",
    [{"weights_sha256": "abc"}, {"hop_seconds": 0.0}, {"pad": "yes"}, {"resampler": "soxr"}],
)
def test_feature_spec_refuses_malformed_fields(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        heads.FeatureSpec(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Training on torch.optim: the recipe, checked against full-batch Adam written here in NumPy.


def numpy_adam_head(
    x: np.ndarray, y: np.ndarray, classes: int, kind: str, seed: int = 0
) -> dict[str, np.ndarray]:
    """The training recipe written out in NumPy float64: standardise, seeded uniform init
    (±1/sqrt(fan_in), zero biases), class-weighted cross-entropy plus 1e-3/2 |W|^2 (weights only),
    TRAIN_STEPS steps of Adam (lr 0.01, betas 0.9/0.999, eps 1e-8) on the full batch."""
    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std < 1e-6, 1.0, std)
    rng = np.random.default_rng(seed)
    shapes = ([("hidden", 64)] if kind == "mlp" else []) + [("out", classes)]
    w: dict[str, np.ndarray] = {}
    width = 128
    for name, units in shapes:
        w[f"{name}.weight"] = rng.uniform(-1 / np.sqrt(width), 1 / np.sqrt(width), (units, width))
        w[f"{name}.bias"] = np.zeros(units)
        width = units
    counts = np.bincount(y, minlength=classes)
    sw = (y.size / (classes * counts))[y]
    sw = sw / sw.sum()
    onehot = np.eye(classes)[y]
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v2 = {k: np.zeros_like(v) for k, v in w.items()}
    for t in range(1, heads.TRAIN_STEPS + 1):
        h = np.maximum(z @ w["hidden.weight"].T + w["hidden.bias"], 0) if kind == "mlp" else z
        logits = h @ w["out.weight"].T + w["out.bias"]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        d = (p / p.sum(axis=1, keepdims=True) - onehot) * sw[:, None]
        g = {"out.weight": d.T @ h, "out.bias": d.sum(axis=0)}
        if kind == "mlp":
            dh = (d @ w["out.weight"]) * (h > 0)
            g |= {"hidden.weight": dh.T @ z, "hidden.bias": dh.sum(axis=0)}
        for k in w:
            grad = g[k] + (1e-3 * w[k] if k.endswith("weight") else 0)
            m[k] = 0.9 * m[k] + 0.1 * grad
            v2[k] = 0.999 * v2[k] + 0.001 * grad**2
            w[k] -= 0.01 * (m[k] / (1 - 0.9**t)) / (np.sqrt(v2[k] / (1 - 0.999**t)) + 1e-8)
    return w


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_training_is_the_recipe_written_in_numpy(kind: heads.HeadKind) -> None:
    x, labels = blobs((9, 4, 6), seed=11, spread=2.0)
    head, _ = heads.train(x, labels, kind=kind)
    y = np.array([head.classes.index(label) for label in labels])
    expected = numpy_adam_head(x.astype(np.float64), y, 3, kind)
    assert head.weights.keys() == expected.keys()
    for key, value in expected.items():  # float64 sums in another order: float32 digits at most
        np.testing.assert_allclose(head.weights[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_training_gives_the_same_head_whatever_the_thread_count() -> None:
    x, y = blobs((40, 30, 50), seed=12, spread=3.0)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a, _ = heads.train(x, y, kind="mlp")
        assert torch.get_num_threads() == 2  # given back after training
        torch.set_num_threads(1)
        b, _ = heads.train(x, y, kind="mlp")
    finally:
        torch.set_num_threads(before)
    for key, value in a.weights.items():
        np.testing.assert_array_equal(b.weights[key], value)


DATA = Path(__file__).parent / "data" / "heads"


def test_a_head_trained_before_torch_optim_loads_and_scores_as_it_did() -> None:
    """tests/data/heads/: an mlp head exported by the NumPy-Adam training (weights 'random', hop
    0.48, pad off) and the scores it gave then: read now, it gives the same scores, bit for bit."""
    head = heads.from_safetensors((DATA / "mlp_numpy_adam.safetensors").read_bytes())
    golden = np.load(DATA / "mlp_numpy_adam_scores.npz")
    assert head.kind == "mlp" and head.classes == ("bell", "speech", "water")
    assert head.features == heads.FeatureSpec("random", 0.48, False, "reference")
    np.testing.assert_array_equal(head.scores(golden["embeddings"]), golden["scores"])
    np.testing.assert_allclose(
        head.scores(golden["embeddings"]),
        reference_scores((DATA / "mlp_numpy_adam.safetensors").read_bytes(), golden["embeddings"]),
        atol=1e-6,
    )
    # its hop and pad are not those of the defaults (0.96, pad on): never a mismatch
    assert heads.check_compatible(head.features, heads.FeatureSpec("random", 0.96, True, "reference")) is None


def test_ranked_orders_best_first_ties_by_class() -> None:
    scores = np.array([[0.1, 0.4, 0.4, 0.1], [0.7, 0.1, 0.1, 0.1]], np.float32)
    np.testing.assert_array_equal(heads.ranked(scores), [[1, 2, 0, 3], [0, 1, 2, 3]])
    np.testing.assert_array_equal(heads.ranked(scores, 2), [[1, 2], [0, 1]])
    assert heads.ranked(scores, 10).shape == (2, 4)


def test_reading_and_scoring_heads_imports_no_pytorch() -> None:
    code = (
        "import sys\nimport numpy as np\nfrom vggish import heads\nfrom vggish.heads import store\n"
        "print(sorted({'torch', 'onnxruntime'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
