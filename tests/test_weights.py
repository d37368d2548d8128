"""The weights file format: round trips, refusals with reasons, random weights, default paths."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import vggish
from vggish import weights as W


@pytest.fixture(scope="module")
def loaded_random() -> W.LoadedWeights:
    return W.random_weights()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, loaded_random: W.LoadedWeights) -> Path:
    path = tmp_path_factory.mktemp("w") / "vggish.safetensors"
    W.save_weights(path, loaded_random.state_dict, loaded_random.pca, {"source": "test"})
    return path


def test_round_trip(saved: Path, loaded_random: W.LoadedWeights) -> None:
    back = W.load_weights(saved)
    assert back.metadata["format"] == "vggish-weights" and back.metadata["source"] == "test"
    assert back.sha256 == W.sha256_file(saved) and len(back.sha256) == 64
    assert set(back.state_dict) == set(W.EXPECTED_SHAPES)
    for key, tensor in loaded_random.state_dict.items():
        assert torch.equal(back.state_dict[key], tensor)
    assert back.pca is not None and loaded_random.pca is not None
    assert np.array_equal(back.pca.eigen_vectors, loaded_random.pca.eigen_vectors)
    assert back.pca.eigen_vectors.dtype == np.float64


@pytest.mark.slow
def test_load_model_from_file_equals_random_model(saved: Path, random_model: vggish.Runtime) -> None:
    model = vggish.load_model(saved, backend="torch")
    x = torch.randn(2, 96, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), random_model(x))
    assert model.has_pca and model.weights_info["sha256"] == W.sha256_file(saved)
    assert not model.network.training


@pytest.mark.slow
def test_random_weights_are_deterministic_and_loud() -> None:
    with pytest.warns(UserWarning, match="RANDOM weights"):
        a = vggish.load_model("random", backend="torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = vggish.load_model("random", backend="torch")
    pairs = zip(a.network.state_dict().items(), b.network.state_dict().items(), strict=True)
    for (ka, va), (kb, vb) in pairs:
        assert ka == kb and torch.equal(va, vb)
    assert torch.equal(a.network.pca_eigen_vectors, b.network.pca_eigen_vectors)
    assert a.weights_info["sha256"] == "random"


def test_without_pca(tmp_path: Path, loaded_random: W.LoadedWeights) -> None:
    path = W.save_weights(tmp_path / "nopca.safetensors", loaded_random.state_dict)
    model = vggish.load_model(path, backend="torch")
    assert not model.has_pca


def _break(state: dict[str, torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    state = dict(state)
    if how == "missing":
        del state["fc2.bias"]
    elif how == "extra":
        state["fc3.weight"] = torch.zeros(1)
    elif how == "shape":
        state["conv1.weight"] = torch.zeros(64, 1, 5, 5)
    elif how == "dtype":
        state["fc2.bias"] = state["fc2.bias"].double()
    elif how == "lone_pca":
        state["pca.means"] = torch.zeros(128, dtype=torch.float64)
    return state


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", "missing fc2.bias"),
        ("extra", "unexpected fc3.weight"),
        ("shape", r"conv1.weight has shape \(64, 1, 5, 5\)"),
        ("dtype", "fc2.bias has dtype torch.float64"),
        ("lone_pca", "without its PCA partner"),
    ],
)
def test_refuses_malformed_files(
    tmp_path: Path, loaded_random: W.LoadedWeights, how: str, message: str
) -> None:
    path = tmp_path / "bad.safetensors"
    save_file(
        _break(loaded_random.state_dict, how),
        str(path),
        metadata={"format": "vggish-weights", "format_version": "1"},
    )
    with pytest.raises(ValueError, match=message):
        vggish.load_model(path)


def test_save_refuses_malformed_state_and_writes_nothing(
    tmp_path: Path, loaded_random: W.LoadedWeights
) -> None:
    with pytest.raises(ValueError, match=r"missing fc2\.bias"):
        W.save_weights(tmp_path / "x.safetensors", _break(loaded_random.state_dict, "missing"))
    assert list(tmp_path.iterdir()) == []


def test_refuses_foreign_or_corrupt_files(tmp_path: Path, loaded_random: W.LoadedWeights) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file(dict(loaded_random.state_dict), str(foreign))
    with pytest.raises(ValueError, match="vggish convert"):
        W.load_weights(foreign)
    future = tmp_path / "future.safetensors"
    save_file(
        dict(loaded_random.state_dict),
        str(future),
        metadata={"format": "vggish-weights", "format_version": "9"},
    )
    with pytest.raises(ValueError, match="format version '9'"):
        W.load_weights(future)
    garbage = tmp_path / "garbage.safetensors"
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    garbage.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 3)  # data truncated
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        W.load_weights(garbage)


def test_missing_file_names_the_ways_out(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="vggish download") as info:
        vggish.load_model(tmp_path / "none.safetensors")
    assert "\n" not in str(info.value) and "--weights random" in str(info.value)


def test_default_path_is_the_checkout_weights_folder() -> None:
    root = Path(__file__).resolve().parents[1]
    assert W.default_weights_path() == root / "weights" / "vggish.safetensors"
