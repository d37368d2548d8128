"""TensorFlow-side test helpers: an independent NHWC VGGish and checkpoint writers.

Nothing here imports ``vggish``: the network follows docs/vggish.md §4 directly in TensorFlow ops
(NHWC, ``tf.nn.conv2d`` SAME, 2x2 max-pools, NHWC flatten, dense layers, ReLU everywhere except
after fc2), and checkpoints are written by TensorFlow's own ``Saver`` in the V1 or V2 format,
so the package's reader and conversion are checked against TensorFlow end to end.

The variable tables and random weights need only NumPy; the functions that run TensorFlow import
it when called (it is a test-only dependency: callers ``pytest.importorskip("tensorflow")``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

# docs/vggish.md §4: TensorFlow scope -> kernel shape (HWIO for convs, (in, out) for dense layers).
CONV_KERNELS: dict[str, tuple[int, int, int, int]] = {
    "vggish/conv1": (3, 3, 1, 64),
    "vggish/conv2": (3, 3, 64, 128),
    "vggish/conv3/conv3_1": (3, 3, 128, 256),
    "vggish/conv3/conv3_2": (3, 3, 256, 256),
    "vggish/conv4/conv4_1": (3, 3, 256, 512),
    "vggish/conv4/conv4_2": (3, 3, 512, 512),
}
POOL_AFTER = frozenset({"vggish/conv1", "vggish/conv2", "vggish/conv3/conv3_2", "vggish/conv4/conv4_2"})
DENSE_KERNELS: dict[str, tuple[int, int]] = {
    "vggish/fc1/fc1_1": (6 * 4 * 512, 4096),
    "vggish/fc1/fc1_2": (4096, 4096),
    "vggish/fc2": (4096, 128),
}
VGGISH_VARIABLES: dict[str, tuple[int, ...]] = {
    name: shape
    for scope, kernel in {**CONV_KERNELS, **DENSE_KERNELS}.items()
    for name, shape in ((f"{scope}/weights", kernel), (f"{scope}/biases", kernel[-1:]))
}
# Variables a training run leaves beside the model's (the converter must ignore them).
TRAINING_EXTRAS: dict[str, np.ndarray] = {
    "global_step": np.array(20000, dtype=np.int64),
    "beta1_power": np.array(0.9**20000, dtype=np.float32),
    "vggish/fc2/biases/Adam": np.full(128, 0.5, dtype=np.float32),
    "vggish/fc2/biases/Adam_1": np.full(128, 0.25, dtype=np.float32),
}


def random_vggish_variables(seed: int) -> dict[str, np.ndarray]:
    """He-normal kernels and small biases: activations stay of order one through the network."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in VGGISH_VARIABLES.items():
        if name.endswith("/biases"):
            out[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
            continue
        fan_in = int(np.prod(shape[:-1]))
        gain = 1.0 if name.startswith("vggish/fc2/") else 2.0
        out[name] = (
            rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(gain / fan_in))
        ).astype(np.float32)
    return out


def tf_embeddings(variables: Mapping[str, np.ndarray], examples: np.ndarray) -> np.ndarray:
    """Google's VGGish forward pass in TensorFlow (eager), NHWC.

    Args:
        variables: the 18 checkpoint variables, TensorFlow layouts.
        examples: (N, 96, 64) log-mel examples.

    Returns:
        (N, 128) float32 pre-activation embeddings.
    """
    import tensorflow as tf

    x = tf.constant(np.asarray(examples, dtype=np.float32)[..., np.newaxis])  # (N, 96, 64, 1)
    for scope in CONV_KERNELS:
        x = tf.nn.conv2d(x, variables[f"{scope}/weights"], strides=1, padding="SAME")
        x = tf.nn.relu(tf.nn.bias_add(x, variables[f"{scope}/biases"]))
        if scope in POOL_AFTER:
            x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="SAME")
    x = tf.reshape(x, [x.shape[0], -1])  # NHWC flatten: index (h * 4 + w) * 512 + c
    for scope in DENSE_KERNELS:
        x = tf.matmul(x, variables[f"{scope}/weights"]) + variables[f"{scope}/biases"]
        if scope != "vggish/fc2":
            x = tf.nn.relu(x)
    return np.asarray(x.numpy())


def tf_read_checkpoint(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """TensorFlow's own reading of the named variables."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(path))
    return {name: np.asarray(reader.get_tensor(name)) for name in names}


def write_checkpoint(
    prefix: Path,
    variables: Mapping[str, np.ndarray],
    version: Literal["v1", "v2"],
    *,
    partitions: Mapping[str, int] | None = None,
    devices: int = 1,
) -> Path:
    """Saves ``variables`` with ``tf.compat.v1.train.Saver`` in the V1 or V2 format.

    Args:
        prefix: the checkpoint path (the V1 file, or the V2 prefix).
        variables: name -> value; any dtype TensorFlow variables take (strings as bytes objects).
        version: ``"v1"`` (legacy single file, like Google's vggish_model.ckpt) or ``"v2"``.
        partitions: name -> number of partitions along axis 0 (saved as slices).
        devices: spread variables over this many CPU devices; a V2 save then writes one data
            shard per device.

    Returns:
        ``prefix``.
    """
    import tensorflow as tf

    tf1 = tf.compat.v1
    partitions = partitions or {}
    prefix.parent.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        feeds, parts = _build_variables(variables, partitions, devices)
        write_version = tf1.train.SaverDef.V1 if version == "v1" else tf1.train.SaverDef.V2
        saver = tf1.train.Saver(write_version=write_version, sharded=devices > 1)
        config = tf1.ConfigProto(device_count={"CPU": devices})
        with tf1.Session(graph=graph, config=config) as session:
            session.run(tf1.global_variables_initializer(), feeds)
            for part, value in parts:
                part.load(value, session)
            saver.save(session, str(prefix), write_meta_graph=False, write_state=False)
    return prefix


def _build_variables(
    variables: Mapping[str, np.ndarray], partitions: Mapping[str, int], devices: int
) -> tuple[dict[Any, np.ndarray], list[tuple[Any, np.ndarray]]]:
    """Creates the graph's variables, fed through placeholders (no giant constants in the graph).

    Returns:
        The placeholder feeds for the initializer, and (partition variable, value) pairs to load.
    """
    import tensorflow as tf

    tf1 = tf.compat.v1
    feeds: dict[Any, np.ndarray] = {}
    parts: list[tuple[Any, np.ndarray]] = []
    for i, (name, value) in enumerate(variables.items()):
        value = np.asarray(value)
        dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
        with tf1.device(f"/cpu:{i % devices}"):
            if name in partitions:
                partitioned = tf1.get_variable(
                    name,
                    shape=value.shape,
                    dtype=dtype,
                    initializer=tf1.zeros_initializer(),
                    partitioner=tf1.fixed_size_partitioner(partitions[name]),
                )
                for part in partitioned:
                    offset = part._save_slice_info.var_offset[0]
                    parts.append((part, value[offset : offset + part.shape[0]]))
                continue
            placeholder = tf1.placeholder(dtype, shape=value.shape)
            feeds[placeholder] = value
            tf1.Variable(placeholder, name=name, trainable=False)
    return feeds, parts


def bfloat16_dtype() -> np.dtype:
    """TensorFlow's bfloat16 as a NumPy dtype (from ml_dtypes, which TensorFlow brings)."""
    import tensorflow as tf

    dtype: np.dtype = np.dtype(tf.bfloat16.as_numpy_dtype)
    return dtype
