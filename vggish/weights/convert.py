"""Google's TensorFlow checkpoint (or another port's ``.pth``) -> the project's weights file.

The conversion is one table, :data:`TF_TO_TORCH`: TensorFlow variable -> state-dict key
and layout change (conv HWIO -> OIHW, dense (in, out) -> (out, in)); the model flattens in
TensorFlow's NHWC order, so ``fc1_1`` needs nothing more. Sources are told apart by content: TF V1
and V2 checkpoints, and state dicts of torchvggish, torchaudio and this package (loaded with
``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch

from vggish import params
from vggish.fileio import sha256_file
from vggish.network.model import CONV_LAYERS, FC_LAYERS
from vggish.weights.format import EXPECTED_SHAPES, PCAParams, missing_weights_message, save_weights
from vggish.weights.location import OFFICIAL_CHECKPOINT_NAME, OFFICIAL_PCA_NAME, default_weights_path
from vggish.weights.tf_checkpoint import checkpoint_files, detect_format, open_checkpoint

logger = logging.getLogger(__name__)

CONVERTER_VERSION = "1"

Layout = Literal["conv", "dense", "bias"]
TensorSpec = tuple[tuple[int, ...], str]  # shape and dtype name of a tensor in a source file
FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})

# TensorFlow variable -> (PyTorch key, layout change). Every VGGish variable exactly once: layer
# ``conv3_1`` lives in scope ``vggish/conv3/conv3_1``, ``conv1`` in ``vggish/conv1``.
_LAYERS = tuple(name for name, _, _ in CONV_LAYERS + FC_LAYERS)


def _tf_variables(name: str) -> tuple[tuple[str, str, Layout], ...]:
    scope = f"vggish/{name}" if "_" not in name else f"vggish/{name.split('_')[0]}/{name}"
    kind: Layout = "conv" if name.startswith("conv") else "dense"
    return (f"{scope}/weights", f"{name}.weight", kind), (f"{scope}/biases", f"{name}.bias", "bias")


TF_TO_TORCH: tuple[tuple[str, str, Layout], ...] = tuple(v for name in _LAYERS for v in _tf_variables(name))

# Other ports' module names -> ours; each layer has ``.weight`` and ``.bias``. torchvggish and
# torchaudio hold the conv layers in one Sequential, the dense ones in another.
_SEQUENTIAL_INDICES = (0, 3, 6, 8, 11, 13, 0, 2, 4)


def _sequential(features: str, embeddings: str) -> dict[str, str]:
    prefixes = [features] * len(CONV_LAYERS) + [embeddings] * len(FC_LAYERS)
    return {f"{p}.{i}": layer for p, i, layer in zip(prefixes, _SEQUENTIAL_INDICES, _LAYERS, strict=True)}


PTH_LAYOUTS: dict[str, dict[str, str]] = {
    "vggish-pth": {layer: layer for layer in _LAYERS},
    "torchvggish-pth": _sequential("features", "embeddings"),
    "torchaudio-pth": _sequential("features_network", "embedding_network"),
}


# TensorFlow's axes in PyTorch's order: conv HWIO -> OIHW, dense (in, out) -> (out, in).
_TORCH_AXES: dict[Layout, tuple[int, ...]] = {"conv": (3, 2, 0, 1), "dense": (1, 0), "bias": (0,)}


def _tf_shape(key: str, layout: Layout) -> tuple[int, ...]:
    return tuple(EXPECTED_SHAPES[key][int(axis)] for axis in np.argsort(_TORCH_AXES[layout]))


def to_torch_layout(array: np.ndarray, layout: Layout) -> np.ndarray:
    """One TensorFlow kernel or bias in PyTorch's layout, as a contiguous float32 array."""
    return np.ascontiguousarray(array.transpose(_TORCH_AXES[layout]), dtype=np.float32)


def _check_tensors(
    available: Mapping[str, TensorSpec], expected: Mapping[str, tuple[int, ...]], source: str
) -> None:
    """Raises ValueError for missing, misshaped or non-float tensors; logs the ignored extras."""
    problems = [f"missing {name}" for name in expected if name not in available]
    for name, shape in expected.items():
        if name in available and tuple(available[name][0]) != shape:
            problems.append(f"{name} has shape {tuple(available[name][0])}, expected {shape}")
        if name in available and available[name][1] not in FLOAT_DTYPES:
            problems.append(f"{name} has dtype {available[name][1]}, expected float32")
    if problems:
        raise ValueError(f"{source} is not a VGGish checkpoint: " + "; ".join(problems))
    extras = sorted(set(available) - set(expected))
    if extras:
        logger.info(
            "%s: ignoring %d variables that VGGish does not use: %s", source, len(extras), ", ".join(extras)
        )
    odd = sorted({available[name][1] for name in expected} - {"float32"})
    if odd:
        logger.warning("%s: converting %s tensors to float32", source, ", ".join(odd))


def _state_dict_from_tf(
    available: Mapping[str, TensorSpec], get: Callable[[str], np.ndarray], source: str
) -> dict[str, np.ndarray]:
    _check_tensors(available, {name: _tf_shape(key, layout) for name, key, layout in TF_TO_TORCH}, source)
    return {key: to_torch_layout(get(name), layout) for name, key, layout in TF_TO_TORCH}


def tf_variables_to_state_dict(variables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{tf_name: array}`` -> our state dict (contiguous float32); extra entries are ignored.

    Raises:
        ValueError: naming every missing, misshaped or non-floating VGGish variable.
    """
    available = {name: (tuple(array.shape), array.dtype.name) for name, array in variables.items()}
    return _state_dict_from_tf(available, variables.__getitem__, "the TensorFlow variables")


def _state_dict_from_checkpoint(path: Path) -> dict[str, np.ndarray]:
    with open_checkpoint(path) as reader:
        available = {
            name: (info.shape, info.numpy_dtype.name if info.supported else "unsupported")
            for name, info in reader.variables.items()
        }
        return _state_dict_from_tf(available, reader.read, str(path))


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``, also allowing plain NumPy arrays (torchvggish's PCA file)."""
    reconstruct = cast(Callable[..., Any], np.zeros(0).__reduce__()[0])  # rebuilds an ndarray
    numpy_globals: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
        (reconstruct, "numpy.core.multiarray._reconstruct"),  # as NumPy 1.x files name it
        (reconstruct, "numpy._core.multiarray._reconstruct"),  # as NumPy 2.x files name it
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float32)),
        type(np.dtype(np.float64)),
    ]
    try:
        with torch.serialization.safe_globals(numpy_globals):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f"it needs {refused[1]}, which" if refused else "its contents"
        raise ValueError(
            f"{path}: refused to unpickle: {what} weights-only loading does not allow "
            "(only tensors and plain NumPy arrays are read)"
        ) from e
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable PyTorch file ({' '.join(str(e).split())})") from e


def _pth_layout(tensors: Mapping[str, torch.Tensor], source: Path) -> tuple[str, dict[str, str]]:
    """The port whose key names the state dict uses: (format name, source key -> our key)."""
    best_name, best_hits = "", -1
    for name, layers in PTH_LAYOUTS.items():
        hits = sum(f"{prefix}.weight" in tensors for prefix in layers)
        if hits > best_hits:
            best_name, best_hits = name, hits
    if best_hits == 0:
        found = ", ".join(sorted(tensors)[:6]) or "no tensors"
        raise ValueError(
            f"{source}: not a VGGish state dict of this package, torchvggish or torchaudio (found {found})"
        )
    layers = PTH_LAYOUTS[best_name]
    mapping = {f"{src}.{part}": f"{dst}.{part}" for src, dst in layers.items() for part in ("weight", "bias")}
    return best_name, mapping


def _state_dict_from_pth(path: Path) -> tuple[dict[str, np.ndarray], str]:
    obj = _torch_load(path)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict, found a {type(obj).__name__}")
    tensors = {str(key): value for key, value in obj.items() if isinstance(value, torch.Tensor)}
    fmt, mapping = _pth_layout(tensors, path)
    renamed = {mapping.get(key, key): tensor for key, tensor in tensors.items()}
    available = {key: (tuple(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in renamed.items()}
    _check_tensors(available, EXPECTED_SHAPES, str(path))
    state = {key: renamed[key].detach().to(torch.float32).contiguous().numpy() for key in EXPECTED_SHAPES}
    return state, fmt


def _pca_array(arrays: Mapping[str, Any], name: str, source: Path) -> np.ndarray:
    """The entry called ``name`` (or ``*.name``, as in a saved torchvggish model), as float64."""
    for key, value in arrays.items():
        if key == name or str(key).endswith(f".{name}"):
            data = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            return data.astype(np.float64)
    raise ValueError(
        f"{source}: no {name} in this PCA file (found {', '.join(map(str, arrays)) or 'nothing'})"
    )


def load_pca(path: str | os.PathLike[str]) -> PCAParams:
    """PCA parameters (float64) from Google's ``vggish_pca_params.npz`` or torchvggish's ``.pth``.

    Raises:
        ValueError: if the file is not such a file or its arrays have other shapes.
    """
    source = Path(path)
    if _file_kind(source) == "torch":
        arrays: Mapping[str, Any] = _torch_load(source)
    else:
        try:
            with np.load(source, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"{source}: not an .npz of PCA parameters ({e})") from e
    if not isinstance(arrays, Mapping):
        raise ValueError(f"{source}: expected a dict of PCA arrays, found a {type(arrays).__name__}")
    eigen_vectors = _pca_array(arrays, params.PCA_EIGEN_VECTORS_NAME, source)
    means = _pca_array(arrays, params.PCA_MEANS_NAME, source).reshape(-1)
    try:
        return PCAParams(eigen_vectors, means)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from e


def _file_kind(path: Path) -> Literal["torch", "zip", "other"]:
    """Tells files apart by content: a PyTorch file is a legacy pickle or a zip holding a
    ``data.pkl``; an ``.npz`` is another zip."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80":
        return "torch"
    if head != b"PK\x03\x04":
        return "other"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: a damaged or truncated zip archive ({e})") from e
    return "torch" if any(name.endswith("data.pkl") for name in names) else "zip"


def _convert_source(source: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The state dict of any supported source, and its provenance."""
    if not source.exists() and not source.with_name(source.name + ".index").exists():
        raise FileNotFoundError(f"no such checkpoint: {source}")
    kind = _file_kind(source) if source.is_file() else "other"
    if kind == "zip":
        raise ValueError(f"{source}: a zip archive but no PyTorch file (PCA parameters go in --pca)")
    if kind == "torch":
        state, fmt = _state_dict_from_pth(source)
        files = [source]
    else:
        fmt = f"tf-{detect_format(source)}"
        state = _state_dict_from_checkpoint(source)
        files = checkpoint_files(source)
    hashes = {file.name: sha256_file(file) for file in files}
    metadata = {"source": source.name, "source_format": fmt, "source_sha256": hashes[files[0].name]}
    if len(files) > 1:
        metadata["source_files"] = json.dumps(hashes)
    return state, metadata


def convert_checkpoint(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    pca: str | os.PathLike[str] | None = None,
) -> Path:
    """Converts a VGGish checkpoint (and optional PCA file) into a ``.safetensors`` weights file.

    ``checkpoint``: Google's V1 ``vggish_model.ckpt``, a V2 prefix / ``.index``, or a ``.pth`` of
    this package, torchvggish or torchaudio; ``output`` is written atomically, with provenance.

    Raises:
        FileNotFoundError: if an input is missing.
        ValueError: (including :class:`~vggish.weights.tf_checkpoint.CheckpointError`) if an input is
            corrupt or not VGGish, or ``output`` would overwrite an input.
    """
    source, out = Path(checkpoint), Path(output)
    if out.suffix != ".safetensors":
        raise ValueError(f"the output must be a .safetensors file; got {out}")
    if out.exists() and any(out.resolve() == Path(p).resolve() for p in (source, pca) if p is not None):
        raise ValueError(f"refusing to overwrite the input {out} with the converted weights")
    pca_params = load_pca(pca) if pca is not None else None
    state, metadata = _convert_source(source)
    if pca is not None:
        metadata |= {"pca_source": Path(pca).name, "pca_sha256": sha256_file(pca)}
    metadata["converter_version"] = CONVERTER_VERSION
    return save_weights(out, state, pca_params, metadata)


def resolve_weights_path(weights: str | os.PathLike[str] | None) -> Path:
    """The weights file to load (None: the default path); Google's checkpoint found beside a
    missing file is converted into it on first use.

    Raises:
        FileNotFoundError: neither the file nor Google's checkpoint is there.
    """
    path = default_weights_path() if weights is None else Path(weights)
    if path.is_file():
        return path
    checkpoint = path.parent / OFFICIAL_CHECKPOINT_NAME
    if path.suffix == ".safetensors" and checkpoint.is_file():
        pca = path.parent / OFFICIAL_PCA_NAME
        logger.warning("converting %s to %s (first use)", checkpoint, path)
        return convert_checkpoint(checkpoint, path, pca=pca if pca.is_file() else None)
    raise FileNotFoundError(missing_weights_message(path))
