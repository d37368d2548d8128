"""The shape of the code, checked: imports point one way (no cycles in vggish/ or app/), the library
never imports the service or reads the environment, and each job has one home.

The import graph is built from the source with ``ast`` (every ``import`` statement, at module
level or inside functions, including ``if TYPE_CHECKING:`` blocks: a cycle there is still a cycle
in the design), so it needs nothing imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"vggish": REPO / "vggish", "app": REPO / "app"}
INSTALLED_NAMES = {"vggish_app": "app"}  # app/ installs as vggish_app (see pyproject.toml)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours that an imported name refers to (longest known prefix), else None."""
    head, _, rest = name.partition(".")
    name = ".".join(filter(None, [INSTALLED_NAMES.get(head, head), rest]))
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    """Our modules that ``module`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name in base
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                targets.add(target)
    return targets


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _cycle() -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_the_imports() -> None:
    """The check below is only as good as the graph: spot-check known edges."""
    assert len(MODULES) > 40
    assert "vggish.pipeline.source" in GRAPH["vggish.pipeline.driver"]  # from .source import ...
    assert "vggish.params" in GRAPH["vggish.features.logmel"]  # from vggish import params
    assert "app.batching" in GRAPH["app.service"]  # from .batching import Batcher
    assert "app.deps" in GRAPH["app.routes.heads"]  # from ..deps import ...
    assert "app.main" in GRAPH["vggish.cli.serve_cmd"]  # from vggish_app.main import serve


def test_no_import_cycles() -> None:
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_deliberate_cycle_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "vggish.params", {*GRAPH["vggish.params"], "vggish.pipeline.driver"})
    cycle = _cycle()
    assert cycle is not None and cycle[0] == cycle[-1] and "vggish.params" in cycle


def test_the_library_never_imports_the_service() -> None:
    """app/ imports vggish/, never the reverse; the CLI, above both, starts the service."""
    offenders = {
        module: sorted(t for t in targets if t.startswith("app"))
        for module, targets in GRAPH.items()
        if module.startswith("vggish") and not module.startswith("vggish.cli")
    }
    assert {m: t for m, t in offenders.items() if t} == {}


def test_only_the_one_settings_model_reads_the_environment() -> None:
    """The CLI and the service read ``VGGISH_*`` through one pydantic-settings model; nothing else
    reads the environment (the library takes arguments)."""
    words = ("os.environ", "os.getenv", "getenv(", "BaseSettings")
    readers = sorted(
        module
        for module, path in MODULES.items()
        if any(word in path.read_text(encoding="utf-8") for word in words)
    )
    assert readers == ["vggish.settings"]


@pytest.mark.parametrize(
    ("job", "home", "needle"),
    [
        ("decoding audio files", "vggish.audio.decode", "SoundFile("),
        ("building the streaming resampler", "vggish.pipeline.source", "StreamingResampler("),
        ("framing examples", "vggish.pipeline.source", "FrameStream("),
        ("cutting batches", "vggish.pipeline.packer", "def take("),
    ],
)
def test_one_home_for_each_job(job: str, home: str, needle: str) -> None:
    """A second decoder, example source or batcher would drift from the first: there is one."""
    holders = sorted(m for m, p in MODULES.items() if needle in p.read_text(encoding="utf-8"))
    logmel = {"vggish.features.logmel_torch", "vggish.features.logmel"}
    allowed = {home, *logmel} if "FrameStream" in needle else {home}
    assert set(holders) <= allowed | {"vggish.audio.resample"}, f"{job} happens in {holders}"
