"""The service on the ONNX backend: same numbers as the library, and /v1/models says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from service_helpers import clip, running_app

from vggish.network.runtime import Runtime

pytestmark = pytest.mark.slow


def test_onnx_backend_serves_library_numbers(random_model: Runtime, tmp_path: Path) -> None:
    with running_app(backend="onnx", data_dir=tmp_path) as client:
        card = client.get("/v1/models").json()["data"][0]
        assert card["backend"].startswith("onnxruntime")
        audio = clip(3.0, 22050, channels=2)
        r = client.post("/v1/embeddings", files={"file": ("a.wav", audio)})
        assert r.status_code == 200, r.text
    got = np.array(r.json()["data"][0]["embeddings"], dtype=np.float32)
    expected = random_model.embed_file(audio).embeddings
    assert got.shape == expected.shape == (3, 128)
    assert np.abs(got - expected).max() <= 1e-5 * float(np.abs(expected).max())


def test_unknown_backend_is_refused() -> None:
    from pydantic import ValidationError

    from vggish_app.config import Settings

    with pytest.raises(ValidationError, match="backend"):
        Settings(backend="tensorrt")
