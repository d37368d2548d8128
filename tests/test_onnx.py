"""The ONNX graph built from the weights computes what the PyTorch network computes, at any batch
size and for any per-layer plan; the backend, the export and the CLI around it."""

from __future__ import annotations

import copy
import gc
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import onnx

import vggish
from vggish import cli
from vggish.network import loader, plans, winograd
from vggish.network import onnx as graph
from vggish.network.onnx import OnnxVGGish
from vggish.network.plans import Plan

THREADS = 2
TOLERANCE = 1e-5  # of the embeddings' largest magnitude: float32 summation order, Winograd
MIXED = Plan(("direct", "winograd4", "direct", "winograd4", "winograd4", "direct_chunked"))
"""Winograd after a direct layer and a direct layer after Winograd, both ways, pooled and not."""


@pytest.fixture(scope="module")
def network(random_model: vggish.Runtime) -> vggish.VGGish:
    return random_model.network


@pytest.fixture(scope="module")
def default_model(network: vggish.VGGish):  # type: ignore[no-untyped-def]
    return graph.build_graph(network, metadata={"sha256": "random", "source": "test"})


@pytest.fixture(scope="module")
def default_runner(network: vggish.VGGish) -> OnnxVGGish:
    return OnnxVGGish.from_network(network, metadata={"sha256": "random"}, threads=THREADS)


def _examples(batch: int, reference: dict[str, np.ndarray]) -> np.ndarray:
    """Real log-mel examples (the shared reference's) first, then random ones."""
    real = np.concatenate([reference["noise_examples"], reference["smoke_examples"]]).astype(np.float32)
    noise = np.random.default_rng(batch).standard_normal((batch, 96, 64)).astype(np.float32)
    return np.concatenate([real, noise])[:batch]


def _assert_matches(network: vggish.VGGish, runner: OnnxVGGish, x: np.ndarray) -> None:
    with torch.inference_mode():
        expected = network(torch.from_numpy(x)).numpy()
    got = runner(x)
    assert got.shape == (len(x), 128) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= TOLERANCE * np.abs(expected).max()


@pytest.mark.parametrize("batch", [1, 5, 33])
def test_default_plan_matches_torch(network, default_runner, reference, batch: int) -> None:  # type: ignore[no-untyped-def]
    _assert_matches(network, default_runner, _examples(batch, reference))


@pytest.mark.parametrize("plan", [plans.DIRECT, MIXED], ids=["all-direct", "mixed"])
def test_other_plans_match_torch(network, reference, plan: Plan) -> None:  # type: ignore[no-untyped-def]
    """Every layer direct, and layout changes between direct (NCHW) and Winograd (positions
    first) layers, both ways."""
    runner = OnnxVGGish.from_network(network, plan=plan, threads=THREADS)
    _assert_matches(network, runner, _examples(5, reference))


def test_graph_contract_and_checker(default_model, network) -> None:  # type: ignore[no-untyped-def]
    """Input, output, dynamic batch, opset, ``vggish.*`` metadata; ONNX's checker with shape
    inference accepts the graphs; the plan decides which layers are ``Conv``."""
    onnx.checker.check_model(default_model, full_check=True)
    onnx.checker.check_model(graph.build_graph(network, MIXED), full_check=True)
    (inp,), (out,) = default_model.graph.input, default_model.graph.output
    assert (inp.name, out.name) == ("examples", "embeddings")
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 96, 64]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 128]
    assert [(o.domain, o.version) for o in default_model.opset_import] == [("", 18)]
    assert {p.key: p.value for p in default_model.metadata_props} == {
        "vggish.sha256": "random",
        "vggish.source": "test",
        "vggish.producer": "vggish.network.onnx",
        "vggish.graph": graph.GRAPH_REVISION,
        "vggish.plan": plans.ONNX_DEFAULT.tag,
    }
    ops = [n.op_type for n in default_model.graph.node]
    assert ops.count("Conv") == 2 and ops.count("Gemm") == 3  # ONNX_DEFAULT: Conv for conv1, conv2
    assert sum(n.output[0].endswith("_products") for n in default_model.graph.node) == 4
    direct_ops = [n.op_type for n in graph.build_graph(network, plans.DIRECT).graph.node]
    assert direct_ops.count("Conv") == 6 and "MatMul" not in direct_ops


def test_runner_owns_its_weights_and_checks_its_input(network, reference) -> None:  # type: ignore[no-untyped-def]
    """The weights handed to ONNX Runtime as arrays (views of the parameters) are copied into the
    session: changing or freeing the network afterwards changes nothing."""
    own = copy.deepcopy(network)
    runner = OnnxVGGish.from_network(own, metadata={"sha256": "random"}, threads=THREADS)
    assert runner.weights_info["sha256"] == "random" and runner.name == "onnx"
    with torch.no_grad():
        for parameter in own.parameters():
            parameter.zero_()
    del own
    gc.collect()
    _assert_matches(network, runner, _examples(5, reference))
    assert runner(np.zeros((0, 96, 64), np.float32)).shape == (0, 128)
    assert runner(np.zeros((2, 1, 96, 64), np.float32)).shape == (2, 128)
    with pytest.raises(ValueError, match=r"\(N, 96, 64\)"):
        runner(np.zeros((2, 64, 96), np.float32))


def test_winograd_kernels_equal_transform_kernel(network) -> None:  # type: ignore[no-untyped-def]
    """The same float64 transform rounded once: equal but for float64 values on (or within a
    float64 rounding of) a float32 rounding tie, which the summation order decides: 1 ulp at most."""
    weight = network.conv4_2.weight
    ours = graph._winograd_kernels(weight, winograd.transforms(4))
    theirs = winograd.transform_kernel(weight.detach(), 4).numpy()
    assert ours.shape == theirs.shape == (36, 512, 512)
    assert np.all(np.abs(ours - theirs) <= np.spacing(np.abs(theirs)))
    assert np.mean(ours == theirs) > 0.99


def test_a_tile_that_does_not_divide_the_map_is_refused(network) -> None:  # type: ignore[no-untyped-def]
    x = graph._Activation("x", 6, 4, 512, np.arange(24).reshape(6, 4))
    with pytest.raises(ValueError, match=r"F\(4x4, 3x3\) cannot compute conv4_2 on a 6x4 map"):
        graph._winograd_layer(graph._GraphBuilder(), x, network.conv4_2, "conv4_2", True, 4)


def test_not_a_vggish_graph(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not an onnx file")
    with pytest.raises(RuntimeError, match="cannot load"):
        OnnxVGGish.from_file(bogus)


@pytest.mark.slow
def test_cli_export_runs_in_onnx_runtime(tmp_path: Path, capsys: pytest.CaptureFixture[str], network) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "demo.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["export-onnx", "--weights", "random", "--output", str(out)]) == 0
    assert "max |onnx - torch|" in capsys.readouterr().out
    assert out.stat().st_size > 250 * 2**20  # the weights are inside
    assert [p.name for p in tmp_path.iterdir()] == ["demo.onnx"]  # no temporary file left
    runner = OnnxVGGish.from_file(out, threads=THREADS)
    assert runner.weights_info["sha256"] == "random"
    x = np.random.default_rng(3).standard_normal((3, 96, 64)).astype(np.float32)
    _assert_matches(network, runner, x)


def test_cli_export_to_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = cli.main(["export-onnx", "--weights", "random", "--output", str(tmp_path / "no" / "x.onnx")])
    assert status == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def _load(**kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vggish.load_model("random", **kwargs)


@pytest.mark.slow
def test_onnx_backend_embeds_like_torch(random_model) -> None:  # type: ignore[no-untyped-def]
    """load_model(backend="onnx"): embed() agrees with PyTorch; nothing is written anywhere."""
    model = _load(backend="onnx")
    assert model.backend == "onnx" and random_model.backend == "torch"
    wave = np.random.default_rng(7).standard_normal((44100 * 4, 2)) * 0.1
    ours, theirs = model.embed(wave, 44100), random_model.embed(wave, 44100)
    scale = float(np.abs(theirs.embeddings).max())
    assert np.abs(ours.embeddings - theirs.embeddings).max() <= TOLERANCE * scale
    np.testing.assert_array_equal(ours.timestamps, theirs.timestamps)


@pytest.mark.slow
def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _load(backend="auto").backend == "onnx"  # installed here, CPU
    assert _load(backend="auto", precision="bf16").backend == "torch"  # ONNX runs fp32
    monkeypatch.setattr(loader, "onnx_installed", lambda: False)
    assert _load(backend="auto").backend == "torch"  # not installed: PyTorch
    with pytest.raises(ValueError, match="backend must be one of"):
        _load(backend="tensorrt")
    with pytest.raises(ValueError, match="runs on the CPU"):
        _load(backend="onnx", device="cuda")


@pytest.mark.slow
def test_cli_embed_with_onnx_backend(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    t = np.arange(16000 * 3) / 16000
    sf.write(wav, (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16), 16000)
    out = tmp_path / "tone.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        argv = ["embed", str(wav), "-o", str(out), "--weights", "random", "--backend", "onnx"]
        assert cli.main(argv) == 0
    expected = _load(backend="torch").embed_file(wav)
    with np.load(out) as got:
        scale = float(np.abs(expected.embeddings).max())
        assert np.abs(got["embedding"] - expected.embeddings).max() <= TOLERANCE * scale
