"""hubconf.py: torch.hub loads the model from this checkout, lists one entry point and shows its help."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import vggish

REPO = Path(__file__).resolve().parents[1]


def hub_load(repo: str = str(REPO), **kwargs: object) -> vggish.VGGish:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random weights warn
        model: vggish.VGGish = torch.hub.load(repo, "vggish", **kwargs)  # type: ignore[no-untyped-call]
    return model


@pytest.fixture
def cached_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``owner/repo:ref`` of this checkout, as torch.hub finds it after downloading it from GitHub
    (its cache: ``$TORCH_HOME/hub/owner_repo_ref``), so that no network is needed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "local_vggish_main").symlink_to(REPO, target_is_directory=True)
    return "local/vggish:main"


@pytest.mark.slow
def test_hub_model_embeds_as_the_library() -> None:
    model = hub_load(source="local", weights="random", backend="torch")
    assert isinstance(model, vggish.Runtime) and not model.network.training
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        library = vggish.load_model("random", backend="torch")
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2 * 22050, 2))
    got, expected = model.embed(x, 22050), library.embed(x, 22050)
    assert got.embeddings.shape == (2, 128)
    np.testing.assert_array_equal(got.embeddings, expected.embeddings)
    np.testing.assert_array_equal(got.postprocessed, expected.postprocessed)  # type: ignore[arg-type]
    assert model.weights_info == library.weights_info


def test_weights_are_passed_on(tmp_path: Path) -> None:
    missing = tmp_path / "none.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        hub_load(source="local", weights=str(missing))
    with pytest.raises(ValueError, match="backend"):
        hub_load(source="local", weights="random", backend="tensorflow")


def test_list_help_and_load_as_from_github(cached_repo: str) -> None:
    hub = {"trust_repo": True, "verbose": False}
    assert torch.hub.list(cached_repo, **hub) == ["vggish"]  # type: ignore[no-untyped-call]
    text = torch.hub.help(cached_repo, "vggish", trust_repo=True)  # type: ignore[no-untyped-call]
    assert "official weights" in text and '"random"' in text and "device" in text
    model = hub_load(cached_repo, weights="random", backend="torch", **hub)
    assert isinstance(model, vggish.Runtime) and model.weights_info["sha256"] == "random"


def test_dependencies_are_pyprojects() -> None:
    import importlib.util

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    assert spec is not None and spec.loader is not None
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {re.match(r"[A-Za-z0-9_.-]+", d)[0].lower().replace("-", "_") for d in project["dependencies"]}  # type: ignore[index]
    assert set(hubconf.dependencies) == declared
