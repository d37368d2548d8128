"""The wheel: everything the package needs, and no generic top-level ``app`` module.

``app/`` installs as ``vggish_app`` (pyproject's package-dir mapping), so ``pip install vggish``
cannot shadow, or be shadowed by, a user's own ``app`` package.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _packages_on_disk() -> set[str]:
    names = set()
    for root, installed in (("vggish", "vggish"), ("app", "vggish_app")):
        for init in (REPO / root).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / root).parts
            names.add(".".join([installed, *parts]))
    return names


def test_every_package_is_declared() -> None:
    listing = re.search(r"^packages = \[(.*?)\]", (REPO / "pyproject.toml").read_text(), re.S | re.M)
    assert listing is not None
    declared = set(re.findall(r'"([\w.]+)"', listing.group(1)))
    assert declared == _packages_on_disk()


@pytest.mark.slow
def test_the_wheel_holds_vggish_app_and_no_app(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(tmp_path),
        ".",
    ]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    (wheel,) = tmp_path.glob("vggish-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert "app" not in tops and {"vggish", "vggish_app", "hubconf.py"} & tops == {"vggish", "vggish_app"}
    assert "vggish_app/main.py" in names and "vggish_app/routes/embeddings.py" in names
    assert "vggish_app/static/index.html" in names and "vggish/py.typed" in names
    assert any(name.endswith("dist-info/licenses/LICENSE") for name in names)
    assert any(name.endswith("dist-info/licenses/NOTICE") for name in names)
