"""TFRecords written without TensorFlow, read back by TensorFlow: framing, CRCs, SequenceExample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_extract import CORPUS, make_corpus

from vggish.cli import main
from vggish.extract.tfrecord import sequence_example, tfrecord
from vggish.features.logmel import example_timestamps
from vggish.network.runtime import Runtime

pytestmark = pytest.mark.tensorflow


def _parse(path: Path) -> list[tuple[dict[str, object], np.ndarray]]:
    tf = pytest.importorskip("tensorflow")
    context_spec = {
        "video_id": tf.io.FixedLenFeature([], tf.string),
        "path": tf.io.FixedLenFeature([], tf.string),
        "start_time_seconds": tf.io.FixedLenFeature([], tf.float32),
        "end_time_seconds": tf.io.FixedLenFeature([], tf.float32),
    }
    sequence_spec = {"audio_embedding": tf.io.FixedLenSequenceFeature([], tf.string)}
    records = []
    # TFRecordDataset checks both masked CRCs of every record and fails on a mismatch.
    for raw in tf.data.TFRecordDataset(str(path)):
        context, sequence = tf.io.parse_single_sequence_example(raw, context_spec, sequence_spec)
        frames = [np.frombuffer(b, np.uint8) for b in sequence["audio_embedding"].numpy()]
        records.append(({k: v.numpy() for k, v in context.items()}, np.stack(frames)))
    return records


def test_one_record_round_trips(tmp_path: Path) -> None:
    features = np.arange(3 * 128, dtype=np.int64).reshape(3, 128).astype(np.uint8)
    path = tmp_path / "one.tfrecord"
    path.write_bytes(tfrecord(sequence_example("clip", "/x/clip.wav", 0.0, 2.895, features)))
    [(context, frames)] = _parse(path)
    assert context["video_id"] == b"clip" and context["path"] == b"/x/clip.wav"
    assert context["start_time_seconds"] == 0.0
    assert context["end_time_seconds"] == pytest.approx(2.895)
    np.testing.assert_array_equal(frames, features)


def test_extract_tfrecord_equals_embed_file(tmp_path: Path, random_model: Runtime) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    args = ["extract", str(corpus), "-o", str(out), "--weights", "random", "--format", "tfrecord"]
    assert main([*args, "--workers", "0", "--rows-per-part", "6"]) == 0
    parts = sorted(out.glob("part-*.tfrecord"))
    assert len(parts) > 1
    records = [record for part in parts for record in _parse(part)]
    assert sorted(c["path"].decode() for c, _ in records) == sorted(str(corpus / n) for n, _, _ in CORPUS)
    for context, frames in records:
        ref = random_model.embed_file(context["path"].decode())
        assert ref.postprocessed is not None
        assert frames.shape == ref.postprocessed.shape
        assert np.abs(frames.astype(int) - ref.postprocessed).max() <= 1  # a rounding edge may move
        end = example_timestamps(frames.shape[0])[-1, 1]
        assert context["end_time_seconds"] == pytest.approx(end)


def test_tfrecord_needs_postprocessing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    args = ["extract", str(corpus), "-o", str(tmp_path / "o"), "--weights", "random", "--format", "tfrecord"]
    assert main([*args, "--no-postprocess"]) == 1
    assert "--no-postprocess" in capsys.readouterr().err


def test_tensorflow_checks_our_crcs(tmp_path: Path) -> None:
    """A flipped CRC byte is refused by TensorFlow, so the round trips above do check our CRCs."""
    tf = pytest.importorskip("tensorflow")
    data = bytearray(tfrecord(sequence_example("c", "c.wav", 0.0, 1.0, np.zeros((1, 128), np.uint8))))
    data[-1] ^= 0xFF  # the data's masked CRC
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(path)))
