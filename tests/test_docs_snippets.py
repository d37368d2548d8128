"""Every Python and shell snippet of README.md and docs/ runs, after the install its page names.

How the snippets run (the least magic that lets them run unchanged):

- **As an installed package, with the install the page names.** ``vggish/`` and ``app/`` (as
  ``vggish_app/``, its installed name) are copied into a temporary folder put on ``PYTHONPATH``,
  with ``HOME`` pointing at a temporary home. Outside a checkout the library's default weights are
  ``~/.cache/vggish/vggish.safetensors``, so the harness writes the library's deterministic random
  weights there: ``vggish.load_model()``, ``vggish serve`` and every CLI default load them as they
  would load Google's. ``VGGISH_*`` variables of the calling environment are dropped;
  ``VGGISH_DOWNLOAD=false`` keeps the service off the network.

  Each runnable block must follow a marker naming the install it assumes, which holds for the
  rest of its page: ``<!-- docs-test: install serve,onnx -->`` (what ``make serve`` installs),
  ``<!-- docs-test: install dev -->`` (``make install``: everything). The test environment has
  every extra; the distributions of the extras the page does not name are not installed for the
  snippet and every process it starts: a ``sitecustomize`` puts, in place of site-packages on
  ``sys.path``, a folder of links to its entries less theirs. A snippet that needs more than its
  page says fails here.
- **In a new shell.** The working folder of each block is a fresh copy of audio files named as
  the docs name them (``clip.wav``, ``dog.wav``, ``corpus/``, ``clips/<label>/`` ...; see
  :data:`FIXTURE_FILES`, made from Debian's real recordings where installed), with ``.venv``
  linking to the test's virtual environment, as in a clone after ``make serve``. ``PATH`` does
  not hold ``.venv/bin`` unless the install marker says ``activated`` (the pages after
  "Install" write ``vggish`` for ``.venv/bin/vggish``, as after ``export PATH=...``). The commands
  of one block share one shell's state (``export``, ``cd``); blocks do not.
- **Python blocks** run as a script in a subprocess (exit status 0 expected).
- **Shell blocks** run command by command (backslash continuations joined, comments dropped),
  each its own test named after its line. The policy (:func:`plan`), applied in this order:

  ======================================  =================================================
  command                                 what the test does
  ======================================  =================================================
  contains a ``...`` placeholder          skipped: illustrative, not runnable
  ``make ...``                            skipped: installs a .venv, runs the suite or a server
  ``docker ...``                          skipped: needs a Docker engine and the network
  ``vggish download``, ``pip install``    skipped: needs the network
  ``--device cuda``                       skipped unless torch sees a CUDA GPU
  ``vggish serve``, ``uvicorn``           started on a free port (``--port`` set or replaced),
                                          waited for until ``/readyz`` answers 200, stopped
  ``curl`` to ``127.0.0.1:8000``          sent to the page's server (see below), with ``-sS
                                          --fail-with-body`` so that an HTTP error fails it;
                                          skipped when curl is not installed
  anything else                           run as written; exit status 0 expected
  ======================================  =================================================

- **One server per page.** Commands and Python blocks that talk to ``127.0.0.1:8000`` talk to
  one ``vggish serve`` started for their page on a free port (the port rewritten), with the
  page's install; it is stopped when the next page's tests start.

A block opts out with ``<!-- docs-test: skip (why) -->`` on the line before its fence (blank
lines and the install marker between are allowed); it is reported as skipped with that reason.
Snippets known to fail are listed in :data:`KNOWN_FAILURES` with the reason and run as strict
xfails: once the docs are fixed the xfail turns into a failure that asks for the entry to go.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tomllib
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PAGES = (REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")))
LANGUAGES = {"python": "python", "sh": "shell", "bash": "shell", "shell": "shell"}
MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<kind>\w+)\s*(?P<rest>.*?)\s*-->")
SKIP_REASON = re.compile(r"^\((?P<reason>[^)]*)\)$")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
DOCS_PORT = "8000"  # the port the docs' commands use; the tests use free ones
DOCS_URL = re.compile(rf"(127\.0\.0\.1|localhost):{DOCS_PORT}\b")
COMMAND_TIMEOUT_S = 600.0  # generous bound for one command (none takes more than ~30 s)
READY_TIMEOUT_S = 300.0  # for a server to answer /readyz (loading + warm-up, ONNX export)
STOP_TIMEOUT_S = 60.0
SITE_VIEW_VAR = "DOCS_TEST_SITE_PACKAGES"  # read by the sandbox's sitecustomize
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])

# Snippets that fail today, keyed by their first line (Python) or their command (shell, without
# its comment). Remove an entry when the docs are fixed: a strict xfail reports the fix.
KNOWN_FAILURES: dict[str, str] = {}

ALSA_DIR = Path("/usr/share/sounds/alsa")
FREEDESKTOP_DIR = Path("/usr/share/sounds/freedesktop/stereo")
FIXTURE_SECONDS = 3.0
SPEECH, ALERT = "speech", "alert"
# Working-folder files: relative path -> kind of recording (speech: alsa-utils, alert: freedesktop).
FIXTURE_FILES: dict[str, str] = {
    "clip.wav": SPEECH,
    "clip.flac": SPEECH,
    "clip.mp3": SPEECH,
    "dog.wav": ALERT,
    "cat.flac": ALERT,
    "talk.mp3": SPEECH,
    "a.wav": SPEECH,
    "b.flac": ALERT,
    "new.wav": SPEECH,
    "speech1.wav": SPEECH,
    "speech2.wav": SPEECH,
    "bell.ogg": ALERT,
    "beep.ogg": ALERT,
    "corpus/speech/front.wav": SPEECH,
    "corpus/alert/bell.ogg": ALERT,
    "corpus/talk.flac": SPEECH,
    "more/rear.flac": SPEECH,
    "clips/speech/1.wav": SPEECH,
    "clips/speech/2.flac": SPEECH,
    "clips/alert/1.ogg": ALERT,
    "clips/alert/2.ogg": ALERT,
    "bg/a.wav": SPEECH,
    "bg/b.wav": ALERT,
    "bg/c.wav": SPEECH,
    "gen/1.wav": ALERT,
    "gen/2.wav": SPEECH,
}
FIXTURE_LISTS = {"files.txt": "a.wav\ndog.wav\n"}  # for `vggish extract @files.txt`
FIXTURE_COPIES = ("hubconf.py",)  # repository files a clone has (torch.hub.load(".", ...))


# --- reading the pages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Install:
    """What a page's snippets assume is installed: the package with ``extras``, ``.venv/bin`` on
    ``PATH`` or not."""

    extras: frozenset[str]
    activated: bool = False


@dataclass(frozen=True)
class Block:
    """A fenced code block: its page, language, first line's number, text, and markers."""

    page: str  # relative to the repository
    language: str  # "python" or "shell"
    line: int  # 1-based line of the first line inside the fence
    code: str
    skip: str | None = None  # the opt-out marker's reason
    install: Install | None = None  # the install marker in force

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Command:
    """One shell command of a block: continuation lines joined, the comment dropped."""

    block: Block
    line: int  # the page's line where it starts
    text: str  # what bash runs, comment removed
    words: tuple[str, ...]

    @property
    def key(self) -> str:
        """The command's words joined by single blanks: its name in KNOWN_FAILURES."""
        return " ".join(self.words)


def read_blocks(markdown: str, page: str = "README.md") -> list[Block]:
    """The Python and shell blocks of ``markdown`` in order, with their markers."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    install: Install | None = None
    i = 0
    while i < len(lines):
        marker = MARKER.search(lines[i])
        if marker is not None and marker.group("kind") == "install":
            install = parse_install(marker.group("rest"), f"{page}:{i + 1}")
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, info = opening.group("fence"), opening.group("info").lower()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if info in LANGUAGES:
            code = "\n".join(lines[i + 1 : end]) + "\n"
            skip = _skip_reason(lines, i, page)
            blocks.append(Block(page, LANGUAGES[info], i + 2, code, skip, install))
        i = end + 1
    return blocks


def parse_install(text: str, where: str) -> Install:
    """``serve,onnx activated`` -> Install({"serve", "onnx"}, activated=True)."""
    words = text.split()
    if not words or any(w != "activated" for w in words[1:]):
        raise ValueError(f"{where}: write `<!-- docs-test: install EXTRA,EXTRA [activated] -->`")
    extras = frozenset(e.strip() for e in words[0].split(",") if e.strip())
    unknown = extras - set(optional_dependencies())
    if unknown:
        known = sorted(optional_dependencies())
        raise ValueError(f"{where}: unknown extras {sorted(unknown)} (pyproject.toml's: {known})")
    return Install(extras, activated="activated" in words[1:])


def _skip_reason(lines: list[str], fence_index: int, page: str) -> str | None:
    """The reason of a skip marker among the marker lines just above the fence."""
    j = fence_index - 1
    while j >= 0 and (not lines[j].strip() or MARKER.search(lines[j])):
        marker = MARKER.search(lines[j])
        if marker is not None and marker.group("kind") == "skip":
            reason = SKIP_REASON.match(marker.group("rest"))
            if reason is None or not reason.group("reason").strip():
                raise ValueError(f"{page}:{j + 1}: a docs-test skip marker needs a reason in parentheses")
            return reason.group("reason").strip()
        j -= 1
    return None


def strip_comment(text: str) -> str:
    """``text`` without a trailing shell comment (a ``#`` outside quotes, after a blank or at the start)."""
    quote: str | None = None
    escaped = False
    for k, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (k == 0 or text[k - 1].isspace()):
            return text[:k].rstrip()
    return text.rstrip()


def read_commands(block: Block) -> list[Command]:
    """The block's commands: lines ending in a backslash are joined; comment lines are dropped."""
    commands: list[Command] = []
    pending: list[str] = []
    start = block.line
    for offset, raw in enumerate(block.code.splitlines()):
        if not pending:
            start = block.line + offset
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        text = strip_comment(" ".join([*pending, raw]))
        pending = []
        try:
            words = tuple(shlex.split(text)) if text else ()
        except ValueError:  # not shell syntax (an unclosed quote in a placeholder, <Pytorch's index>)
            words = tuple(text.split())
        if words:
            commands.append(Command(block, start, text, words))
    return commands


# --- what an install has ------------------------------------------------------------------------


def optional_dependencies() -> dict[str, list[str]]:
    """pyproject.toml's extras: name -> requirement strings."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    return extras


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _extra_requirements(extras: frozenset[str]) -> list[Requirement]:
    """The requirements of ``extras``, the package's own extras (``vggish[serve,...]``) expanded."""
    table = optional_dependencies()
    found: list[Requirement] = []
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in table[extra]:
            req = Requirement(text)
            if _normal(req.name) == "vggish":
                todo += list(req.extras)
            else:
                found.append(req)
    return found


def _closure(requirements: list[Requirement]) -> set[str]:
    """The installed distributions ``requirements`` pull in, transitively (their extras too)."""
    names: set[str] = set()
    todo = list(requirements)
    while todo:
        req = todo.pop()
        name = _normal(req.name)
        if name in names:
            continue
        names.add(name)
        try:
            needs = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in needs:
            sub = Requirement(text)
            envs = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append(sub)
    return names


def not_installed(install: Install) -> frozenset[str]:
    """The distributions of the extras that ``install`` does not pull in (normalised names)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = [Requirement(text) for text in project["dependencies"]]
    has = _closure([*core, *_extra_requirements(install.extras)])
    every = {_normal(r.name) for r in _extra_requirements(frozenset(optional_dependencies()))}
    return frozenset(every - has)


def site_view(install: Install, folder: Path) -> Path:
    """A folder of links to site-packages' entries, less those of the distributions ``install``
    lacks (their packages and metadata; entries that installed distributions share are kept)."""
    hidden = not_installed(install)
    view = folder / ("site-" + "-".join(sorted(install.extras)))
    if view.is_dir():
        return view
    gone: set[str] = set()
    kept: set[str] = set()
    for dist in importlib.metadata.distributions():
        entries = {f.parts[0] for f in dist.files or () if f.parts and f.parts[0] != ".."}
        (gone if _normal(dist.metadata["Name"]) in hidden else kept).update(entries)
    view.mkdir(parents=True)
    for entry in SITE_PACKAGES.iterdir():
        if entry.name not in gone - kept:
            (view / entry.name).symlink_to(entry)
    return view


SITECUSTOMIZE = f'''\
"""Installs only what a docs page names (tests/test_docs_snippets.py): site-packages is replaced
on sys.path by a folder of links to its entries less those of the other extras' distributions."""
import os
import sys

_view = os.environ.get("{SITE_VIEW_VAR}")
if _view:
    _real = os.path.realpath({str(SITE_PACKAGES)!r})
    sys.path[:] = [_view if os.path.realpath(p) == _real else p for p in sys.path]
'''


# --- the policy -----------------------------------------------------------------------------------

RUN, SERVE, CURL, SKIP = "run", "serve", "curl", "skip"


@dataclass(frozen=True)
class Plan:
    """What the test does with a command, and why when it does not run it."""

    action: str  # RUN, SERVE, CURL or SKIP
    reason: str = ""


def program(words: tuple[str, ...]) -> tuple[str, ...]:
    """The words from the program on (leading ``NAME=value`` assignments dropped, a path to a
    program reduced to its name)."""
    k = 0
    while k < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[k]):
        k += 1
    argv = words[k:]
    return (Path(argv[0]).name, *argv[1:]) if argv else argv


def plan(words: tuple[str, ...], cuda: bool) -> Plan:
    """The policy for one command (see the module's docstring)."""
    argv = program(words)
    name = argv[0] if argv else ""
    if any("..." in w or "…" in w for w in words):
        return Plan(SKIP, "a `...` placeholder: illustrative, not runnable")
    if name == "make":
        return Plan(SKIP, "`make` installs a .venv, runs the suite or a server; CI runs `make test` itself")
    if name == "docker":
        return Plan(SKIP, "needs a Docker engine and the network to build the image")
    pip = name in ("pip", "pip3") or argv[1:3] == ("-m", "pip")
    if argv[:2] == ("vggish", "download") or (pip and "install" in argv):
        return Plan(SKIP, "needs the network")
    if not cuda and any(w == "cuda" or w.startswith(("cuda:", "--device=cuda")) for w in argv):
        return Plan(SKIP, "needs a CUDA GPU, and torch sees none here")
    if argv[:2] == ("vggish", "serve") or name == "uvicorn":
        return Plan(SERVE)
    if name == "curl":
        return Plan(CURL) if shutil.which("curl") else Plan(SKIP, "curl is not installed")
    return Plan(RUN)


def with_port(command: str, port: int) -> str:
    """A server command set to listen on ``port``: ``--port N`` replaced, or appended."""
    replaced, count = re.subn(r"--port(\s+|=)\d+", f"--port {port}", command)
    return replaced if count else f"{command} --port {port}"


def to_port(text: str, port: int) -> str:
    """``text`` with the docs' ``127.0.0.1:8000`` (or ``localhost:8000``) aimed at ``port``."""
    return DOCS_URL.sub(rf"\g<1>:{port}", text)


def curl_to(command: str, port: int) -> str:
    """A docs ``curl`` command aimed at ``port`` that fails on an HTTP error and is quiet."""
    return re.sub(r"^curl\b", "curl -sS --fail-with-body", to_port(command, port).lstrip())


# --- the environment the snippets run in ----------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """An installed-looking vggish with random default weights, and the audio files to use."""

    env: dict[str, str]  # without .venv/bin on PATH, with every extra
    weights: Path
    fixtures: Path
    views: Path  # where the site-packages of each install are made

    def env_for(self, install: Install, workdir: Path) -> dict[str, str]:
        """The environment of a snippet of a page with ``install``, run in ``workdir``."""
        env = dict(self.env)
        env[SITE_VIEW_VAR] = str(site_view(install, self.views))
        if install.activated:
            env["PATH"] = os.pathsep.join([str(workdir / ".venv" / "bin"), env["PATH"]])
        return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _recordings(kind: str) -> list[Path]:
    if kind == SPEECH:
        return sorted(ALSA_DIR.glob("*.wav"))
    return [p for p in sorted(FREEDESKTOP_DIR.glob("*.oga")) if not p.name.startswith("audio-channel")]


def _synthetic(kind: str, index: int, rate: int = 44_100) -> tuple[np.ndarray, int]:
    """A stand-in recording: a syllable-like modulated chord (speech) or a decaying tone (alert)."""
    t = np.arange(int(rate * FIXTURE_SECONDS)) / rate
    rng = np.random.default_rng(index)
    if kind == SPEECH:
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
        harmonics = (140 + 10 * index) * np.arange(1, 6)
        tone = sum(np.sin(2 * np.pi * f * t) / (h + 1) for h, f in enumerate(harmonics))
        signal_ = 0.2 * envelope * tone + 0.01 * rng.standard_normal(t.size)
    else:
        signal_ = 0.5 * np.sin(2 * np.pi * (880 + 110 * index) * t) * np.exp(-3.0 * (t % 1.0))
    return signal_.astype(np.float32), rate


def _looped(path: Path) -> tuple[np.ndarray, int]:
    """A real recording, mixed to mono and looped to FIXTURE_SECONDS."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    repeats = int(np.ceil(FIXTURE_SECONDS * rate / mono.size))
    return np.tile(mono, repeats)[: int(FIXTURE_SECONDS * rate)], int(rate)


def write_fixtures(folder: Path) -> None:
    """The docs' audio files (see FIXTURE_FILES), lists and repository files, in ``folder``."""
    import soundfile as sf

    formats = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
    formats[".mp3"] = ("MP3", "MPEG_LAYER_III")
    used = {SPEECH: 0, ALERT: 0}
    for relative, kind in FIXTURE_FILES.items():
        sources = _recordings(kind)
        index = used[kind]
        used[kind] += 1
        samples, rate = _looped(sources[index % len(sources)]) if sources else _synthetic(kind, index)
        out = folder / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        file_format, subtype = formats[out.suffix]
        sf.write(str(out), samples, rate, format=file_format, subtype=subtype)
    for relative, text in FIXTURE_LISTS.items():
        (folder / relative).write_text(text)
    for relative in FIXTURE_COPIES:
        shutil.copyfile(REPO / relative, folder / relative)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    from vggish import weights as W

    root = tmp_path_factory.mktemp("docs")
    site = root / "site"
    for package, installed in (("vggish", "vggish"), ("app", "vggish_app")):  # as pip installs them
        shutil.copytree(REPO / package, site / installed, ignore=shutil.ignore_patterns("__pycache__"))
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    home = root / "home"
    weights = home / ".cache" / "vggish" / W.DEFAULT_WEIGHTS_NAME
    loaded = W.random_weights()
    W.save_weights(weights, loaded.state_dict, loaded.pca, {"source": "random weights for the docs tests"})
    fixtures = root / "fixtures"
    write_fixtures(fixtures)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGGISH_") and k != "PYTHONPATH"}
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env.update(
        HOME=str(home),
        PYTHONPATH=str(site),
        PATH=os.pathsep.join(path),
        VGGISH_DOWNLOAD="false",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("VIRTUAL_ENV", None)
    probe = "import vggish; print(vggish.__file__); print(vggish.default_weights_path())"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    imported, default = done.stdout.split()
    assert Path(imported) == site / "vggish" / "__init__.py", "the snippets must import the copy"
    assert Path(default) == weights, "outside a checkout the default weights must be in ~/.cache/vggish"
    yield Sandbox(env, weights, fixtures, root / "installs")
    shutil.rmtree(home / ".cache", ignore_errors=True)  # 275 MB of weights: not kept


def workdir(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A fresh copy of the fixtures, with ``.venv`` linking to the test's environment."""
    folder = tmp_path_factory.mktemp(re.sub(r"[^A-Za-z0-9]+", "-", name))
    shutil.copytree(sandbox.fixtures, folder, dirs_exist_ok=True)
    (folder / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return folder


# --- running --------------------------------------------------------------------------------------


class Server:
    """A server process started from a docs command, stopped at the end."""

    def __init__(self, command: str, port: int, cwd: Path, env: dict[str, str]) -> None:
        self.command, self.port = command, port
        self.log = cwd / f".server-{port}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, which stop() signals
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_ready(self) -> str | None:
        """None once /readyz answers 200; why not when the process exits or READY_TIMEOUT_S pass."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = f"http://127.0.0.1:{self.port}/readyz"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"`{self.command}` exited with {self.process.returncode}:\n{self.output()}"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return None
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        return f"`{self.command}`: /readyz not 200 after {READY_TIMEOUT_S:.0f} s:\n{self.output()}"

    def stop(self) -> None:
        """SIGTERM to the server's process group (the server and the bash that started it)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class PageServers:
    """The one ``vggish serve`` of the page whose tests run now; the previous page's is stopped."""

    def __init__(self, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.sandbox, self.tmp = sandbox, tmp_path_factory
        self.page: str | None = None
        self.server: Server | None = None
        self.failure: str | None = None

    def port(self, block: Block) -> int:
        """The port of ``block``'s page's server, started with the page's install if needed.

        Raises:
            AssertionError: the server did not start.
        """
        if self.page != block.page:
            self.stop()
            self.page = block.page
            assert block.install is not None
            folder = workdir(self.sandbox, self.tmp, f"server-{block.page}")
            port = free_port()
            command = f"{shlex.quote(sys.executable)} -m vggish serve --port {port}"
            self.server = Server(command, port, folder, self.sandbox.env_for(block.install, folder))
            self.failure = self.server.wait_ready()
        assert self.failure is None, f"the server of {block.page} did not start: {self.failure}"
        assert self.server is not None
        return self.server.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.page, self.server, self.failure = None, None, None


@pytest.fixture(scope="module")
def page_servers(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PageServers]:
    servers = PageServers(sandbox, tmp_path_factory)
    yield servers
    servers.stop()


@dataclass
class Shell:
    """The state one shell block's commands share: folder, environment, results so far."""

    cwd: Path
    env: dict[str, str]
    results: dict[int, str | None] = field(default_factory=dict)  # command line -> failure or None


@pytest.fixture(scope="module")
def shells() -> dict[str, Shell]:
    return {}


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def execute(command: Command, shell: Shell, servers: PageServers) -> str | None:
    """Runs one command by the policy in ``shell``, keeping its exports and ``cd``; returns why it
    failed, or None."""
    action = plan(command.words, cuda_available()).action
    if action == SKIP:
        return None
    if action == SERVE:
        port = free_port()
        server = Server(with_port(command.text, port), port, shell.cwd, shell.env)
        try:
            return server.wait_ready()
        finally:
            server.stop()
    text = command.text
    if action == CURL or DOCS_URL.search(text):
        port = servers.port(command.block)
        text = curl_to(text, port) if action == CURL else to_port(text, port)
    state = shell.cwd / ".shell-state"
    script = f"{text}\n__status=$?\n{{ pwd; env -0; }} > {shlex.quote(str(state))}\nexit $__status\n"
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=shell.cwd,
        env=shell.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    print(f"$ {text}\n{done.stdout}{done.stderr}")
    if state.is_file():
        cwd, _, variables = state.read_text().partition("\n")
        shell.cwd = Path(cwd)
        shell.env = dict(v.split("=", 1) for v in variables.split("\0") if "=" in v)
    if done.returncode != 0:
        return f"`{text}` exited with {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return None


# --- the tests ------------------------------------------------------------------------------------


def _blocks() -> list[Block]:
    blocks: list[Block] = []
    for path in PAGES:
        page = path.relative_to(REPO).as_posix()
        blocks += read_blocks(path.read_text(encoding="utf-8"), page)
    return blocks


def _first_line(block: Block) -> str:
    return next((line.strip() for line in block.code.splitlines() if line.strip()), "")


def _known(key: str) -> list[pytest.MarkDecorator]:
    reason = KNOWN_FAILURES.get(key)
    if reason is None:
        return []
    return [pytest.mark.xfail(reason=f"docs bug: {reason}", strict=True, raises=AssertionError)]


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_./@:=-]+", "_", text)[:60]


def _python_params() -> list[pytest.ParameterSet]:
    return [
        pytest.param(b, id=f"{b.page}:L{b.line}", marks=_known(_first_line(b)))
        for b in _blocks()
        if b.language == "python"
    ]


def _shell_params() -> list[pytest.ParameterSet]:
    params = []
    for b in _blocks():
        if b.language != "shell":
            continue
        if b.skip is not None:
            params.append(pytest.param(b, None, id=f"{b.page}:L{b.line}-block"))
            continue
        for c in read_commands(b):
            label = _label(" ".join(c.words))
            params.append(pytest.param(b, c, id=f"{b.page}:L{c.line}-{label}", marks=_known(c.key)))
    return params


def _runs_something(block: Block) -> bool:
    """Whether the tests run any of ``block`` (a block of `make` commands runs nothing)."""
    if block.language == "python":
        return True
    return any(plan(c.words, cuda=True).action != SKIP for c in read_commands(block))


def _install_of(block: Block) -> Install:
    assert block.install is not None, (
        f"{block.where}: name the install this block assumes on a line above it, e.g. "
        "`<!-- docs-test: install serve,onnx -->` (what `make serve` installs)"
    )
    return block.install


@pytest.mark.slow
@pytest.mark.parametrize("block", _python_params())
def test_python_block_runs(
    block: Block, sandbox: Sandbox, page_servers: PageServers, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if block.skip is not None:
        pytest.skip(f"{block.where}: opted out: {block.skip}")
    install = _install_of(block)
    folder = workdir(sandbox, tmp_path_factory, block.where)
    code = block.code
    if DOCS_URL.search(code):
        code = to_port(code, page_servers.port(block))
    script = folder / "docs_snippet.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, script.name],
        cwd=folder,
        env=sandbox.env_for(install, folder),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    print(done.stdout)
    assert done.returncode == 0, f"{block.where}: exit {done.returncode}\n{done.stderr[-4000:]}"


@pytest.mark.slow
@pytest.mark.parametrize(("block", "command"), _shell_params())
def test_shell_command_runs(
    block: Block,
    command: Command | None,
    sandbox: Sandbox,
    shells: dict[str, Shell],
    page_servers: PageServers,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if command is None:
        pytest.skip(f"{block.where}: opted out: {block.skip}")
    decision = plan(command.words, cuda_available())
    if decision.action == SKIP:
        pytest.skip(f"{block.page}:{command.line}: {decision.reason}")
    install = _install_of(block)
    if block.where not in shells:
        folder = workdir(sandbox, tmp_path_factory, block.where)
        shells[block.where] = Shell(folder, sandbox.env_for(install, folder))
    shell = shells[block.where]
    for earlier in read_commands(block):  # the block's earlier commands first (when run alone)
        if earlier.line >= command.line:
            break
        if earlier.line not in shell.results:
            shell.results[earlier.line] = execute(earlier, shell, page_servers)
    failed_before = [f"{block.page}:{line}: {why}" for line, why in shell.results.items() if why]
    shell.results[command.line] = execute(command, shell, page_servers)
    why = shell.results[command.line]
    context = "\n(earlier commands of this block failed:\n" + "\n".join(failed_before) + ")"
    assert why is None, f"{block.page}:{command.line}: {why}{context if failed_before else ''}"


def test_every_runnable_block_names_its_install_and_known_failures_are_current() -> None:
    blocks = _blocks()
    assert {b.page for b in blocks} >= {"README.md", "docs/library.md", "docs/service.md"}
    unnamed = [b.where for b in blocks if b.skip is None and b.install is None and _runs_something(b)]
    assert unnamed == [], f"blocks without a `<!-- docs-test: install ... -->` above them: {unnamed}"
    keys = {_first_line(b) for b in blocks if b.language == "python"}
    keys |= {c.key for b in blocks if b.language == "shell" and b.skip is None for c in read_commands(b)}
    assert sorted(set(KNOWN_FAILURES) - keys) == [], "KNOWN_FAILURES names snippets the docs no longer have"


# --- the harness itself, on a page written here ---------------------------------------------------

SAMPLE = """\
# title

<!-- docs-test: install serve,onnx -->

```python
print("hello")
```

<!-- docs-test: skip (needs internet) -->

```sh
vggish download
```

<!-- docs-test: install serve,onnx,extract activated -->
```bash
vggish embed clip.wav --output out.npz   # "quoted # comment"
curl -H 'Content-Type: application/json' http://127.0.0.1:8000/v1/embeddings \\
     -d '{"inputs": [{"samples": [0.0, ...]}]}'
make serve
VGGISH_WEIGHTS=random uvicorn app.main:app --port 8000
.venv/bin/vggish extract corpus/ --output f/ --device cuda
echo '#not a comment' # a comment
```

```text
vggish serve
```
"""


def test_blocks_are_read_with_languages_lines_and_markers() -> None:
    blocks = read_blocks(SAMPLE, "docs/sample.md")
    assert [(b.language, b.line, b.skip) for b in blocks] == [
        ("python", 6, None),
        ("shell", 12, "needs internet"),
        ("shell", 17, None),
    ]
    assert blocks[0].code == 'print("hello")\n'
    assert blocks[0].install == blocks[1].install == Install(frozenset({"serve", "onnx"}))
    assert blocks[2].install == Install(frozenset({"serve", "onnx", "extract"}), activated=True)


def test_commands_join_continuations_and_drop_comments() -> None:
    commands = read_commands(read_blocks(SAMPLE)[2])
    assert [c.line for c in commands] == [17, 18, 20, 21, 22, 23]
    unquoted = Block("x.md", "shell", 1, "docker build --build-arg URL=<PyTorch's index> .\n")
    assert read_commands(unquoted)[0].words[-2:] == ("index>", ".")
    assert commands[0].text == "vggish embed clip.wav --output out.npz"
    assert commands[1].words[-1] == '{"inputs": [{"samples": [0.0, ...]}]}'
    assert commands[5].words == ("echo", "#not a comment")


def test_policy() -> None:
    actions = [plan(c.words, cuda=False) for c in read_commands(read_blocks(SAMPLE)[2])]
    assert [p.action for p in actions] == [RUN, SKIP, SKIP, SERVE, SKIP, RUN]
    reasons = [p.reason for p in actions]
    assert "placeholder" in reasons[1] and "make test" in reasons[2] and "CUDA" in reasons[4]
    assert plan(("vggish", "extract", "x", "--device", "cuda"), cuda=True).action == RUN
    assert plan((".venv/bin/vggish", "serve"), cuda=False).action == SERVE
    assert plan((".venv/bin/pip", "install", "-e", ".[extract]"), cuda=False).action == SKIP


def test_ports_are_rewritten() -> None:
    assert with_port("vggish serve --weights random", 5001) == "vggish serve --weights random --port 5001"
    assert with_port("X=1 uvicorn app.main:app --port 8000", 5001) == "X=1 uvicorn app.main:app --port 5001"
    assert curl_to("curl -F file=@a.wav 'http://127.0.0.1:8000/v1/x?a=1'", 5001) == (
        "curl -sS --fail-with-body -F file=@a.wav 'http://127.0.0.1:5001/v1/x?a=1'"
    )
    assert to_port('connect("ws://127.0.0.1:8000/v1/stream")', 5001) == 'connect("ws://127.0.0.1:5001/v1/stream")'


def test_markers_need_a_reason_and_known_extras() -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        read_blocks("<!-- docs-test: skip () -->\n```sh\nls\n```\n")
    with pytest.raises(ValueError, match="unknown extras"):
        read_blocks("<!-- docs-test: install serve,nope -->\n```sh\nls\n```\n")


def test_an_install_lacks_the_distributions_of_the_other_extras(tmp_path: Path) -> None:
    serve = Install(frozenset({"serve", "onnx"}))
    assert {"pyarrow", "httpx", "psycopg", "pandas", "ray"} <= not_installed(serve)  # extract, client, dev...
    assert not not_installed(serve) & {"fastapi", "uvicorn", "onnxruntime", "numpy", "torch", "soundfile"}
    assert "pyarrow" not in not_installed(Install(frozenset({"serve", "onnx", "extract"})))
    assert not_installed(Install(frozenset({"dev", "bench"}))) == frozenset()
    view = site_view(serve, tmp_path)
    names = {p.name for p in view.iterdir()}
    assert {"fastapi", "onnxruntime", "numpy", "torch"} <= names
    assert not names & {"pyarrow", "pandas", "httpx", "psycopg"}
