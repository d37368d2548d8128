"""Every Python and shell snippet in README.md runs, with random weights and local audio files.

How the snippets run (the least magic that lets them run unchanged):

- **As an installed package.** ``vggish/`` and ``app/`` (as ``vggish_app/``, its installed name)
  are copied into a temporary folder put on ``PYTHONPATH``, with ``HOME`` pointing at a temporary
  home. Outside a checkout the library's
  default weights are ``~/.cache/vggish/vggish.safetensors``, so the harness writes the library's
  deterministic random weights (``vggish.weights.random_weights``) there: ``vggish.load_model()``,
  ``vggish serve`` and every CLI default load them as they would load Google's weights. The
  fixture checks that the copy is what the snippets import and that this is the default path.
  ``VGGISH_*`` variables of the calling environment are dropped; ``VGGISH_DOWNLOAD=false`` keeps
  the service off the network.
- **In a working folder of audio files named as the README names them** (``clip.wav``,
  ``dog.wav``, ``cat.flac``, ``talk.mp3``, ``corpus/``, ``clips/<label>/`` ...; see
  :data:`FIXTURE_FILES`), made from Debian's real recordings (alsa-utils speech,
  sound-theme-freedesktop alerts) looped to 3 s, or from synthetic signals where those are not
  installed. Each README block gets a fresh copy; the commands of one shell block share it.
- **Python blocks** run as a script in a subprocess (exit status 0 expected).
- **Shell blocks** run command by command (backslash continuations joined, comments dropped),
  each one through ``bash -c`` with the test's virtual environment first on ``PATH``, and each is
  its own test, named after its README line. The policy (:func:`plan`), applied in this order:

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
  ``curl`` to ``127.0.0.1:8000``          sent to a ``vggish serve`` started for the block on
                                          a free port (the port replaced), with ``-sS
                                          --fail-with-body`` so that an HTTP error fails it;
                                          skipped when curl is not installed
  anything else                           run as written; exit status 0 expected
  ======================================  =================================================

A block opts out with ``<!-- readme-test: skip (why) -->`` on the line before its fence (blank
lines between are allowed); it is reported as skipped with that reason. Snippets known to fail
are listed in :data:`KNOWN_FAILURES` with the reason and run as strict xfails: once the README is
fixed the xfail turns into a failure that asks for the entry to be removed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LANGUAGES = {"python": "python", "sh": "shell", "bash": "shell", "shell": "shell"}
SKIP_MARKER = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
README_PORT = "8000"  # the port the README's commands use; the tests use free ones
COMMAND_TIMEOUT_S = 600.0  # generous bound for one README command (none takes more than ~30 s)
READY_TIMEOUT_S = 300.0  # for a server to answer /readyz (loading + warm-up, ONNX export)
STOP_TIMEOUT_S = 60.0

# Snippets that fail today, keyed by their first line (Python) or their command (shell, without
# its comment). Remove an entry when the README is fixed: a strict xfail reports the fix.
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
}
FIXTURE_LISTS = {"files.txt": "a.wav\ndog.wav\n"}  # for `vggish extract @files.txt`


# --- reading the README ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, its first line's number in the README, its text."""

    language: str  # "python" or "shell"
    line: int  # 1-based line of the first line inside the fence
    code: str
    skip: str | None = None  # the opt-out marker's reason


@dataclass(frozen=True)
class Command:
    """One shell command of a block: continuation lines joined, the comment dropped."""

    block: Block
    line: int  # README line where it starts
    text: str  # what bash runs, comment removed
    words: tuple[str, ...]

    @property
    def key(self) -> str:
        """The command's words joined by single blanks: its name in KNOWN_FAILURES."""
        return " ".join(self.words)


def read_blocks(markdown: str) -> list[Block]:
    """The Python and shell blocks of ``markdown`` in order, with their opt-out reasons."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
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
            blocks.append(Block(LANGUAGES[info], i + 2, code, _skip_reason(lines, i)))
        i = end + 1
    return blocks


def _skip_reason(lines: list[str], fence_index: int) -> str | None:
    """The reason of an opt-out marker on the nearest non-blank line above the fence."""
    j = fence_index - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    match = SKIP_MARKER.search(lines[j]) if j >= 0 else None
    if match is None:
        return None
    reason = match.group("reason").strip()
    if not reason:
        raise ValueError(f"README.md:{j + 1}: a readme-test skip marker needs a reason in parentheses")
    return reason


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
        words = tuple(shlex.split(text)) if text else ()
        if words:
            commands.append(Command(block, start, text, words))
    return commands


# --- the policy -----------------------------------------------------------------------------------

RUN, SERVE, CURL, SKIP = "run", "serve", "curl", "skip"


@dataclass(frozen=True)
class Plan:
    """What the test does with a command, and why when it does not run it."""

    action: str  # RUN, SERVE, CURL or SKIP
    reason: str = ""


def program(words: tuple[str, ...]) -> tuple[str, ...]:
    """The words from the program on (leading ``NAME=value`` assignments dropped)."""
    k = 0
    while k < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[k]):
        k += 1
    return words[k:]


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
    if argv[:2] == ("vggish", "download") or argv[:2] == ("pip", "install") or argv[1:3] == ("-m", "pip"):
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


def curl_to(command: str, port: int) -> str:
    """A README ``curl`` command aimed at ``port`` that fails on an HTTP error and is quiet."""
    command = re.sub(rf"(127\.0\.0\.1|localhost):{README_PORT}\b", rf"\g<1>:{port}", command)
    return re.sub(r"^curl\b", "curl -sS --fail-with-body", command.lstrip())


# --- the environment the snippets run in ----------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """An installed-looking vggish with random default weights, and the audio files to use."""

    env: dict[str, str]
    weights: Path
    fixtures: Path


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
    """The README's audio files (see FIXTURE_FILES) and lists, in ``folder``."""
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


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    from vggish import weights as W
    from vggish.network import onnx as onnx_export

    root = tmp_path_factory.mktemp("readme")
    site = root / "site"
    for package, installed in (("vggish", "vggish"), ("app", "vggish_app")):  # as pip installs them
        shutil.copytree(REPO / package, site / installed, ignore=shutil.ignore_patterns("__pycache__"))
    home = root / "home"
    weights = home / ".cache" / "vggish" / W.DEFAULT_WEIGHTS_NAME
    loaded = W.random_weights()
    W.save_weights(weights, loaded.state_dict, loaded.pca, {"source": "random weights for the README tests"})
    if onnx_export.available():  # `--weights random` finds its graph as a second run would
        link_random_graph(request.getfixturevalue("onnx_cache"), weights.parent, request)
    fixtures = root / "fixtures"
    write_fixtures(fixtures)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGGISH_") and k != "PYTHONPATH"}
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        HOME=str(home),
        PYTHONPATH=str(site),
        PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]),
        VGGISH_DOWNLOAD="false",
        PYTHONDONTWRITEBYTECODE="1",
    )
    probe = "import vggish; print(vggish.__file__); print(vggish.default_weights_path())"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    imported, default = done.stdout.split()
    assert Path(imported) == site / "vggish" / "__init__.py", "the snippets must import the copy"
    assert Path(default) == weights, "outside a checkout the default weights must be in ~/.cache/vggish"
    yield Sandbox(env, weights, fixtures)
    shutil.rmtree(home / ".cache", ignore_errors=True)  # 275 MB of weights (+ ONNX graph): not kept


def link_random_graph(shared_cache: Path, cache: Path, request: pytest.FixtureRequest) -> None:
    """Links the ONNX graph of ``--weights random`` from the run's shared cache (exported there
    once for the run; tests/test_onnx.py tests exporting) into the sandbox's ``~/.cache/vggish``."""
    from vggish.network import onnx as onnx_export
    from vggish.network import plans

    model = request.getfixturevalue("random_model")
    onnx_export.onnx_session(model.network, "random", shared_cache, metadata=model.weights_info)
    graph = onnx_export.graph_path(shared_cache, "random", plans.ONNX_DEFAULT.tag)
    target = onnx_export.graph_path(cache, "random", plans.ONNX_DEFAULT.tag)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(graph, target)
    except OSError:  # another file system
        shutil.copyfile(graph, target)


# --- running --------------------------------------------------------------------------------------


class Server:
    """A server process started from a README command, stopped at the end."""

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


@dataclass
class BlockRun:
    """The state one shell block's commands share: the working folder, results so far, a server."""

    workdir: Path
    results: dict[int, str | None] = field(default_factory=dict)  # command line -> failure or None
    server: Server | None = None


@pytest.fixture(scope="module")
def block_runs() -> Iterator[dict[int, BlockRun]]:
    runs: dict[int, BlockRun] = {}
    yield runs
    for run in runs.values():
        if run.server is not None:
            run.server.stop()


def workdir(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory, block: Block) -> Path:
    folder = tmp_path_factory.mktemp(f"readme-L{block.line}")
    shutil.copytree(sandbox.fixtures, folder, dirs_exist_ok=True)
    return folder


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def execute(command: Command, run: BlockRun, sandbox: Sandbox) -> str | None:
    """Runs one command by the policy; returns why it failed, or None."""
    action = plan(command.words, cuda_available()).action
    if action == SKIP:
        return None
    if action == SERVE:
        port = free_port()
        server = Server(with_port(command.text, port), port, run.workdir, sandbox.env)
        try:
            return server.wait_ready()
        finally:
            server.stop()
    text = command.text
    if action == CURL:
        if run.server is None:
            port = free_port()
            run.server = Server(f"vggish serve --port {port}", port, run.workdir, sandbox.env)
            not_ready = run.server.wait_ready()
            if not_ready is not None:
                return f"the server for this block's curl commands did not start: {not_ready}"
        text = curl_to(text, run.server.port)
    done = subprocess.run(
        ["bash", "-c", text],
        cwd=run.workdir,
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    print(f"$ {text}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        return f"`{text}` exited with {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return None


# --- the tests ------------------------------------------------------------------------------------


def _blocks() -> list[Block]:
    return read_blocks(README.read_text(encoding="utf-8")) if README.is_file() else []


def _first_line(block: Block) -> str:
    return next((line.strip() for line in block.code.splitlines() if line.strip()), "")


def _known(key: str) -> list[pytest.MarkDecorator]:
    reason = KNOWN_FAILURES.get(key)
    if reason is None:
        return []
    return [pytest.mark.xfail(reason=f"README bug: {reason}", strict=True, raises=AssertionError)]


def _python_params() -> list[pytest.ParameterSet]:
    return [
        pytest.param(b, id=f"L{b.line}", marks=_known(_first_line(b)))
        for b in _blocks()
        if b.language == "python"
    ]


def _shell_params() -> list[pytest.ParameterSet]:
    params = []
    for b in _blocks():
        if b.language != "shell":
            continue
        if b.skip is not None:
            params.append(pytest.param(b, None, id=f"L{b.line}-block"))
            continue
        for c in read_commands(b):
            label = re.sub(r"[^A-Za-z0-9_./@:=-]+", "_", " ".join(c.words))[:60]
            params.append(pytest.param(b, c, id=f"L{c.line}-{label}", marks=_known(c.key)))
    return params




@pytest.mark.slow
@pytest.mark.parametrize("block", _python_params())
def test_python_block_runs(block: Block, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> None:
    if block.skip is not None:
        pytest.skip(f"README.md:{block.line}: opted out: {block.skip}")
    folder = workdir(sandbox, tmp_path_factory, block)
    script = folder / "readme_snippet.py"
    script.write_text(block.code)
    done = subprocess.run(
        [sys.executable, script.name],
        cwd=folder,
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"README.md:{block.line}: exit {done.returncode}\n{done.stderr[-4000:]}"


@pytest.mark.slow
@pytest.mark.parametrize(("block", "command"), _shell_params())
def test_shell_command_runs(
    block: Block,
    command: Command | None,
    sandbox: Sandbox,
    block_runs: dict[int, BlockRun],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if command is None:
        pytest.skip(f"README.md:{block.line}: opted out: {block.skip}")
    decision = plan(command.words, cuda_available())
    if decision.action == SKIP:
        pytest.skip(f"README.md:{command.line}: {decision.reason}")
    if block.line not in block_runs:
        block_runs[block.line] = BlockRun(workdir(sandbox, tmp_path_factory, block))
    run = block_runs[block.line]
    for earlier in read_commands(block):  # the block's earlier commands first (when run alone)
        if earlier.line >= command.line:
            break
        if earlier.line not in run.results:
            run.results[earlier.line] = execute(earlier, run, sandbox)
    failed_before = [f"README.md:{line}: {why}" for line, why in run.results.items() if why]
    run.results[command.line] = execute(command, run, sandbox)
    why = run.results[command.line]
    context = "\n(earlier commands of this block failed:\n" + "\n".join(failed_before) + ")"
    assert why is None, f"README.md:{command.line}: {why}{context if failed_before else ''}"


def test_readme_has_snippets_and_known_failures_are_current() -> None:
    blocks = _blocks()
    assert any(b.language == "python" for b in blocks) and any(b.language == "shell" for b in blocks)
    keys = {_first_line(b) for b in blocks if b.language == "python"}
    keys |= {c.key for b in blocks if b.language == "shell" for c in read_commands(b)}
    assert sorted(set(KNOWN_FAILURES) - keys) == [], "KNOWN_FAILURES names snippets the README no longer has"


# --- the harness itself, on a README written here -------------------------------------------------

SAMPLE = """\
# title

```python
print("hello")
```

<!-- readme-test: skip (needs internet) -->

```sh
vggish download
```

```bash
vggish embed clip.wav --output out.npz   # "quoted # comment"
curl -H 'Content-Type: application/json' http://127.0.0.1:8000/v1/embeddings \\
     -d '{"inputs": [{"samples": [0.0, ...]}]}'
make serve
VGGISH_WEIGHTS=random uvicorn app.main:app --port 8000
vggish extract corpus/ --output f/ --device cuda
echo '#not a comment' # a comment
```

```text
vggish serve
```
"""


def test_blocks_are_read_with_languages_lines_and_opt_outs() -> None:
    blocks = read_blocks(SAMPLE)
    assert [(b.language, b.line, b.skip) for b in blocks] == [
        ("python", 4, None),
        ("shell", 10, "needs internet"),
        ("shell", 14, None),
    ]
    assert blocks[0].code == 'print("hello")\n'


def test_commands_join_continuations_and_drop_comments() -> None:
    commands = read_commands(read_blocks(SAMPLE)[2])
    assert [c.line for c in commands] == [14, 15, 17, 18, 19, 20]
    assert commands[0].text == "vggish embed clip.wav --output out.npz"
    assert commands[1].words[-1] == '{"inputs": [{"samples": [0.0, ...]}]}'
    assert commands[5].words == ("echo", "#not a comment")


def test_policy() -> None:
    actions = [plan(c.words, cuda=False) for c in read_commands(read_blocks(SAMPLE)[2])]
    assert [p.action for p in actions] == [RUN, SKIP, SKIP, SERVE, SKIP, RUN]
    reasons = [p.reason for p in actions]
    assert "placeholder" in reasons[1] and "make test" in reasons[2] and "CUDA" in reasons[4]
    assert plan(("vggish", "extract", "x", "--device", "cuda"), cuda=True).action == RUN


def test_ports_are_rewritten() -> None:
    assert with_port("vggish serve --weights random", 5001) == "vggish serve --weights random --port 5001"
    assert with_port("X=1 uvicorn app.main:app --port 8000", 5001) == "X=1 uvicorn app.main:app --port 5001"
    assert curl_to("curl -F file=@a.wav 'http://127.0.0.1:8000/v1/x?a=1'", 5001) == (
        "curl -sS --fail-with-body -F file=@a.wav 'http://127.0.0.1:5001/v1/x?a=1'"
    )


def test_a_marker_without_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        read_blocks("<!-- readme-test: skip () -->\n```sh\nls\n```\n")
