"""Conversion: TensorFlow checkpoints and other ports' .pth files -> our weights -> TF's numbers.

The parity tests write full-size VGGish checkpoints with TensorFlow's Saver (V1, like Google's
vggish_model.ckpt, and V2), convert them with the TensorFlow-free reader, run
:class:`vggish.network.model.VGGish`, and compare with an NHWC VGGish written in TensorFlow
(tests/tf_reference.py) that reads the same checkpoint with TensorFlow's own reader.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import tf_reference
import torch

from vggish import weights as W
from vggish.cli import main
from vggish.network.model import VGGish
from vggish.pipeline.source import wavfile_to_examples
from vggish.weights.convert import (
    CONVERTER_VERSION,
    TF_TO_TORCH,
    convert_checkpoint,
    load_pca,
    tf_variables_to_state_dict,
)

# Other ports' module names, in our layer order (their Sequential indices skip ReLUs and pools).
TORCHVGGISH_NAMES = [f"features.{i}" for i in (0, 3, 6, 8, 11, 13)] + [f"embeddings.{i}" for i in (0, 2, 4)]
TORCHAUDIO_NAMES = [
    n.replace("features", "features_network").replace("embeddings", "embedding_network")
    for n in TORCHVGGISH_NAMES
]
OUR_LAYERS = ["conv1", "conv2", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "fc1_1", "fc1_2", "fc2"]


@pytest.fixture(scope="module")
def tf_variables() -> dict[str, np.ndarray]:
    """Random VGGish-shaped TensorFlow variables (HWIO / (in, out) layouts), He-normal."""
    return tf_reference.random_vggish_variables(seed=1)


@pytest.fixture(scope="module")
def our_state() -> dict[str, torch.Tensor]:
    return W.random_weights().state_dict


def tolerance(reference: np.ndarray) -> float:
    return 1e-4 * max(1.0, float(np.abs(reference).max()))


# --- The mapping table and layouts ----------------------------------------------------------


def test_table_uses_every_variable_and_key_exactly_once() -> None:
    names = [name for name, _, _ in TF_TO_TORCH]
    keys = [key for _, key, _ in TF_TO_TORCH]
    assert len(TF_TO_TORCH) == 18 == len(set(names)) == len(set(keys))
    assert set(names) == set(tf_reference.VGGISH_VARIABLES)
    assert set(keys) == set(W.EXPECTED_SHAPES)


@pytest.mark.slow
def test_layouts_element_by_element(tf_variables: dict[str, np.ndarray]) -> None:
    state = tf_variables_to_state_dict(tf_variables)
    assert {k: v.shape for k, v in state.items()} == W.EXPECTED_SHAPES
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in state.values())
    rng = np.random.default_rng(0)
    for _ in range(50):
        o, i, h, w = rng.integers(0, 256), rng.integers(0, 128), rng.integers(0, 3), rng.integers(0, 3)
        # PyTorch (out, in, kh, kw) <- TensorFlow (kh, kw, in, out)
        assert state["conv3_1.weight"][o, i, h, w] == tf_variables["vggish/conv3/conv3_1/weights"][h, w, i, o]
        row, col = rng.integers(0, 4096), rng.integers(0, 12288)
        # PyTorch (out, in) <- TensorFlow (in, out); the row order stays TensorFlow's NHWC flatten.
        assert state["fc1_1.weight"][row, col] == tf_variables["vggish/fc1/fc1_1/weights"][col, row]
    assert np.array_equal(state["fc2.bias"], tf_variables["vggish/fc2/biases"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("drop", "missing vggish/conv2/biases"),
        ("reshape", r"vggish/fc2/weights has shape \(128, 4096\), expected \(4096, 128\)"),
        ("int", "vggish/conv1/biases has dtype int32, expected float32"),
    ],
)
def test_missing_misshaped_or_integer_variables_are_refused(
    tf_variables: dict[str, np.ndarray], change: str, message: str
) -> None:
    broken = dict(tf_variables)
    if change == "drop":
        del broken["vggish/conv2/biases"]
    elif change == "reshape":
        broken["vggish/fc2/weights"] = broken["vggish/fc2/weights"].T
    else:
        broken["vggish/conv1/biases"] = np.zeros(64, dtype=np.int32)
    with pytest.raises(ValueError, match=message):
        tf_variables_to_state_dict(broken)


@pytest.mark.slow
def test_training_extras_are_ignored_with_a_note(
    tf_variables: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vggish.weights.convert"):
        state = tf_variables_to_state_dict({**tf_variables, **tf_reference.TRAINING_EXTRAS})
    assert set(state) == set(W.EXPECTED_SHAPES)
    assert "ignoring 4 variables" in caplog.text
    assert all(name in caplog.text for name in tf_reference.TRAINING_EXTRAS)


# --- Other ports' .pth files ------------------------------------------------------------------


def renamed(state: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
    """Our state dict under another port's module names."""
    table = dict(zip(OUR_LAYERS, names, strict=True))
    return {f"{table[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in state.items()}


@pytest.mark.parametrize(
    ("layout", "names"),
    [
        ("vggish-pth", OUR_LAYERS),
        ("torchvggish-pth", TORCHVGGISH_NAMES),
        ("torchaudio-pth", TORCHAUDIO_NAMES),
    ],
)
@pytest.mark.slow
def test_pth_state_dicts_of_other_ports(
    tmp_path: Path, our_state: dict[str, torch.Tensor], layout: str, names: list[str]
) -> None:
    source = tmp_path / "model.pth"
    torch.save(renamed(our_state, names), source)
    loaded = W.load_weights(convert_checkpoint(source, tmp_path / "out.safetensors"))
    assert loaded.metadata["source_format"] == layout
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in our_state.items())


def test_real_torchvggish_model_differs_only_by_its_final_relu(
    tmp_path: Path, our_state: dict[str, torch.Tensor]
) -> None:
    torchvggish = pytest.importorskip("torchvggish.torchvggish")
    with torch.device("meta"):
        theirs = torchvggish._vgg(postprocess=False)  # their module, so their real key names
    theirs.load_state_dict(renamed(our_state, TORCHVGGISH_NAMES), assign=True)
    source = tmp_path / "torchvggish.pth"
    torch.save(theirs.state_dict(), source)
    x = torch.randn(3, 96, 64, generator=torch.Generator().manual_seed(0))
    raw = our_embeddings(convert_checkpoint(source, tmp_path / "w.safetensors"), x.numpy())
    with torch.inference_mode():
        reference = theirs.eval()(x.unsqueeze(1))
    assert (raw < 0).any()  # ours is pre-activation, like TensorFlow's current model
    torch.testing.assert_close(torch.relu(torch.from_numpy(raw)), reference, rtol=1e-5, atol=1e-5)


class NotAllowed:
    """A class a weights-only unpickler must refuse to rebuild."""


def test_unknown_or_unsafe_pth_files_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a VGGish state dict"):
        convert_checkpoint(foreign, tmp_path / "a.safetensors")
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"obj": NotAllowed()}, unsafe)
    with pytest.raises(ValueError, match=r"refused to unpickle: it needs \S*NotAllowed"):
        convert_checkpoint(unsafe, tmp_path / "b.safetensors")
    npz = tmp_path / "pca.npz"
    np.savez(npz, pca_means=np.zeros(128))
    with pytest.raises(ValueError, match="PCA parameters go in --pca"):
        convert_checkpoint(npz, tmp_path / "c.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.pth", "pca.npz", "unsafe.pth"]


# --- PCA ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pca_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {"pca_eigen_vectors": rng.standard_normal((128, 128)), "pca_means": rng.standard_normal((128, 1))}


def save_pca_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes a PCA .npz laid out like Google's vggish_pca_params.npz."""
    np.savez(path, pca_eigen_vectors=arrays["pca_eigen_vectors"], pca_means=arrays["pca_means"])


def test_pca_from_npz_and_from_torchvggish_pth(tmp_path: Path, pca_arrays: dict[str, np.ndarray]) -> None:
    npz = tmp_path / "pca.npz"
    save_pca_npz(npz, pca_arrays)
    pth = tmp_path / "pca.pth"
    torch.save(pca_arrays, pth)  # torchvggish's PCA file: a dict of NumPy arrays
    for source in (npz, pth):
        pca = load_pca(source)
        assert pca.eigen_vectors.dtype == pca.means.dtype == np.float64
        assert np.array_equal(pca.eigen_vectors, pca_arrays["pca_eigen_vectors"])
        assert np.array_equal(pca.means, pca_arrays["pca_means"][:, 0])


def test_bad_pca_files_are_named(tmp_path: Path, pca_arrays: dict[str, np.ndarray]) -> None:
    wrong_shape = tmp_path / "wrong.npz"
    np.savez(wrong_shape, pca_eigen_vectors=np.eye(64), pca_means=np.zeros(128))
    with pytest.raises(ValueError, match=r"wrong\.npz: PCA eigen vectors must be \(128, 128\)"):
        load_pca(wrong_shape)
    missing = tmp_path / "missing.npz"
    np.savez(missing, pca_eigen_vectors=pca_arrays["pca_eigen_vectors"])
    with pytest.raises(ValueError, match="no pca_means"):
        load_pca(missing)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"not an \.npz of PCA parameters"):
        load_pca(text)


# --- convert_checkpoint and the CLI ----------------------------------------------------------


@pytest.fixture(scope="module")
def sources(
    tmp_path_factory: pytest.TempPathFactory,
    our_state: dict[str, torch.Tensor],
    pca_arrays: dict[str, np.ndarray],
) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("sources")
    torch.save(renamed(our_state, TORCHVGGISH_NAMES), folder / "vggish-10086976.pth")
    save_pca_npz(folder / "vggish_pca_params.npz", pca_arrays)
    return folder / "vggish-10086976.pth", folder / "vggish_pca_params.npz"


@pytest.mark.slow
def test_metadata_records_provenance(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    model, pca = sources
    loaded = W.load_weights(convert_checkpoint(model, tmp_path / "w.safetensors", pca=pca))
    assert loaded.metadata["source"] == model.name
    assert loaded.metadata["source_sha256"] == W.sha256_file(model)
    assert loaded.metadata["source_format"] == "torchvggish-pth"
    assert loaded.metadata["converter_version"] == CONVERTER_VERSION
    assert loaded.metadata["pca_source"] == pca.name
    assert loaded.metadata["pca_sha256"] == W.sha256_file(pca)
    assert loaded.pca is not None and loaded.pca.means.shape == (128,)


def test_bad_outputs_are_refused_and_failures_leave_nothing(
    tmp_path: Path, sources: tuple[Path, Path]
) -> None:
    model, pca = sources
    with pytest.raises(ValueError, match=r"must be a \.safetensors file"):
        convert_checkpoint(model, tmp_path / "w.pth")
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(b"x")
    with pytest.raises(ValueError, match="refusing to overwrite the input"):
        convert_checkpoint(copy, copy)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(model.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"corrupt\.pth: a damaged or truncated zip archive"):
        convert_checkpoint(corrupt, tmp_path / "out.safetensors", pca=pca)
    with pytest.raises(FileNotFoundError):
        convert_checkpoint(tmp_path / "absent.ckpt", tmp_path / "out.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.safetensors", "corrupt.pth"]


@pytest.mark.slow
def test_cli_prints_one_line(
    tmp_path: Path, sources: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, pca = sources
    out = tmp_path / "weights" / "vggish.safetensors"
    assert main(["convert", str(model), "--pca", str(pca), "--output", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.count("\n") == 1 and printed.out.startswith(f"wrote {out} with PCA (sha256 ")
    assert W.sha256_file(out)[:16] in printed.out
    assert main(["convert", str(tmp_path / "nope.ckpt"), "--output", str(tmp_path / "x.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vggish: error: no such checkpoint")


def test_cli_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = capsys.readouterr().out
    assert "vggish_model.ckpt" in text and "--pca" in text and "V2" in text and ".pth" in text


# --- Parity with TensorFlow, full size ----------------------------------------------------------


@pytest.fixture(scope="module")
def tfr() -> ModuleType:
    pytest.importorskip("tensorflow")
    return tf_reference


@pytest.fixture(scope="module")
def converted(
    tmp_path_factory: pytest.TempPathFactory, tfr: ModuleType, tf_variables: dict[str, np.ndarray]
) -> dict[str, Path]:
    """Full-size V1 and V2 checkpoints (with training extras), each converted to a weights file."""
    out: dict[str, Path] = {}
    for version in ("v1", "v2"):
        folder = tmp_path_factory.mktemp(version)
        prefix = tfr.write_checkpoint(folder / "model.ckpt", {**tf_variables, **tfr.TRAINING_EXTRAS}, version)
        out[version] = convert_checkpoint(prefix, folder / "vggish.safetensors")
        out[f"{version}-checkpoint"] = prefix
    return out


@pytest.fixture(scope="module")
def examples(reference: dict[str, np.ndarray], alsa_recordings: list[Path]) -> dict[str, np.ndarray]:
    """The reference front end's examples (float64 -> float32), and real recordings' examples."""
    keys = ("smoke_examples", "noise_examples", "noise44k_examples")
    recorded = np.concatenate([wavfile_to_examples(path) for path in alsa_recordings])
    return {**{k: reference[k].astype(np.float32) for k in keys}, "recordings": recorded}


@pytest.fixture(scope="module")
def tf_outputs(
    converted: dict[str, Path], tfr: ModuleType, examples: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """TensorFlow's embeddings, from the V1 checkpoint as TensorFlow itself reads it."""
    weights = tfr.tf_read_checkpoint(converted["v1-checkpoint"], list(tfr.VGGISH_VARIABLES))
    return {key: tfr.tf_embeddings(weights, batch) for key, batch in examples.items()}


def our_embeddings(weights: Path, examples: np.ndarray) -> np.ndarray:
    with torch.device("meta"):  # no random initialisation: every parameter comes from the file
        model = VGGish()
    model.load_state_dict(W.load_weights(weights).state_dict, assign=True)
    with torch.inference_mode():
        embeddings: np.ndarray = model.eval()(torch.from_numpy(examples)).numpy()
    return embeddings


@pytest.mark.tensorflow
@pytest.mark.slow
@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("key", ["smoke_examples", "noise_examples", "noise44k_examples", "recordings"])
def test_embeddings_match_tensorflow(
    converted: dict[str, Path],
    examples: dict[str, np.ndarray],
    tf_outputs: dict[str, np.ndarray],
    version: str,
    key: str,
) -> None:
    expected = tf_outputs[key]
    got = our_embeddings(converted[version], examples[key])
    assert got.shape == expected.shape == (examples[key].shape[0], 128)
    assert expected.std() > 0.1  # the comparison is meaningful: activations of order one
    assert np.abs(got - expected).max() <= tolerance(expected)


@pytest.mark.tensorflow
@pytest.mark.slow
def test_v1_and_v2_convert_to_the_same_tensors(converted: dict[str, Path]) -> None:
    v1, v2 = W.load_weights(converted["v1"]), W.load_weights(converted["v2"])
    assert all(torch.equal(v1.state_dict[k], v2.state_dict[k]) for k in W.EXPECTED_SHAPES)
    assert v1.metadata["source_format"] == "tf-v1" and v2.metadata["source_format"] == "tf-v2"
    assert v1.metadata["source_sha256"] == W.sha256_file(converted["v1-checkpoint"])
    assert list(json.loads(v2.metadata["source_files"])) == [
        "model.ckpt.index",
        "model.ckpt.data-00000-of-00001",
    ]
