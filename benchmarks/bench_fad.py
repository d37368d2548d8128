"""``vggish fad`` end to end against the ``frechet-audio-distance`` package (0.3.4, VGGish), side by
side on the same machine, audio and weights; and the FAD each tool gives (docs/fad.md's table).

Two sets of ``--minutes`` of audio each (16 kHz mono int16 WAV, 30 s files of tones, chirps and
noise; the evaluation set differs in pitch and noise) are made in a temporary folder. Both tools
use the same numbers: our random weights are saved as a weights file and exported in
torchvggish's state-dict layout for the other package.

The other package runs in its own virtual environment, ``.venv-peers`` in the repository root
(``make bench-peers``: ``frechet-audio-distance`` and ``torchvggish`` 0.2 installed without their
dependencies; ``--peer-python`` names another). Without it only this project's modes run, and
their rows say so. It is run offline: ``torch.hub.load`` (which would fetch the torchvggish
repository from GitHub) is replaced by torchvggish 0.2's network with the exported weights and the
hub model's ``forward(audio, sr)`` (``waveform_to_examples`` then the network), and
``laion_clap``, ``encodec`` and ``torchlibrosa``, which it imports at load for other models, are
empty stand-ins (their import time is not counted, which favours it).

Each command is a fresh process timed from start to exit (imports, model loading, decoding,
embedding, statistics, distance): ``vggish fad`` in its default mode with each ``--workers``
count, ``--compat google``, and the other package. Each runs once to warm up (the files into the
page cache), then they take turns ``--repeats`` times; medians are reported, with each one's
speed relative to the other package's.

fadtk is not run (it needs torchaudio, whose builds need another torch than this machine's, and
fetches its model from GitHub): the CLI computes its FAD from its documented semantics (per-file
float16 embeddings, Chan-merged statistics, eigen-decomposition square root), marked as such.

Usage: ``python benchmarks/bench_fad.py [--minutes 10] [--repeats 2] [--workers 0 2] [--peer-python PATH]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from _common import Row, log, machine_line, markdown_table

SECTION = "fad"
REPO = Path(__file__).resolve().parents[1]
PEER_PYTHON = REPO / ".venv-peers" / "bin" / "python"  # made by `make bench-peers`
PEER = "frechet-audio-distance 0.3.4"
FILE_SECONDS = 30
RATE = 16000

PEER_SCRIPT = textwrap.dedent(
    """
    import sys, types, json, torch
    for name in ("laion_clap", "encodec", "torchlibrosa", "torchlibrosa.stft", "torchlibrosa.augmentation"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["encodec"].EncodecModel = None
    for attr in ("Spectrogram", "LogmelFilterBank"):
        setattr(sys.modules["torchlibrosa.stft"], attr, None)
    sys.modules["torchlibrosa.augmentation"].SpecAugmentation = None
    import torchvggish
    import torchvggish.torchvggish as tv

    def hub_load(repo_or_dir, model, **kwargs):
        net = tv._vgg(postprocess=False)
        net.load_state_dict(torch.load(sys.argv[1], weights_only=True))
        def forward(audio, sr):
            examples = torchvggish.waveform_to_examples(audio, sr)
            return tv.VGG.forward(net, examples.to(net.device))
        net.forward, net.device = forward, torch.device("cpu")
        return net

    torch.hub.load = hub_load
    from frechet_audio_distance import FrechetAudioDistance
    fad = FrechetAudioDistance(model_name="vggish", sample_rate=16000, use_pca=False, use_activation=False)
    print(json.dumps({"fad": float(fad.score(sys.argv[2], sys.argv[3]))}))
    """
)


def make_sets(root: Path, minutes: float) -> tuple[Path, Path]:
    """Background: tones and chirps with a little noise; evaluation: higher, noisier."""
    sets = []
    for name, base, noise in (("background", 220.0, 0.02), ("eval", 330.0, 0.08)):
        folder = root / name
        folder.mkdir()
        rng = np.random.default_rng(len(name))
        t = np.arange(FILE_SECONDS * RATE) / RATE
        for i in range(int(minutes * 60 // FILE_SECONDS)):
            f0 = base * (1 + 0.15 * i)
            x = 0.3 * np.sin(2 * np.pi * f0 * t * (1 + 0.01 * (i % 4) * t)) + 0.1 * np.sin(
                2 * np.pi * 3 * f0 * t
            )
            x *= 0.6 + 0.4 * np.sin(2 * np.pi * (0.2 + 0.05 * i) * t)
            x += noise * (1 + i % 3) * rng.standard_normal(t.size)
            sf.write(folder / f"{i:03d}.wav", np.clip(x, -1, 1), RATE, subtype="PCM_16")
        sets.append(folder)
    return sets[0], sets[1]


def export_weights(root: Path) -> tuple[Path, Path]:
    """Our random weights as a weights file, and in torchvggish's state-dict layout."""
    import torch

    from vggish.weights.convert import PTH_LAYOUTS
    from vggish.weights.format import random_weights, save_weights

    loaded = random_weights()
    ours = root / "random.safetensors"
    save_weights(ours, loaded.state_dict, pca=loaded.pca, metadata=loaded.metadata)
    theirs = {
        f"{port}.{kind}": loaded.state_dict[f"{layer}.{kind}"].clone()
        for port, layer in PTH_LAYOUTS["torchvggish-pth"].items()
        for kind in ("weight", "bias")
    }
    pth = root / "torchvggish.pth"
    torch.save(theirs, pth)
    return ours, pth


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds of ``cmd`` in a fresh process, and the FAD it printed (its last line, JSON)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, float(json.loads(done.stdout.strip().splitlines()[-1])["fad"])


def fadtk_semantics(model: object, bg: Path, ev: Path) -> float:
    """fadtk 1.1.0's FAD from its documented semantics (not fadtk's code, which is not run)."""
    from scipy import linalg

    def stats(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        n, mu, s = 0, np.zeros(128), np.zeros((128, 128))
        for path in sorted(folder.glob("*.wav")):
            e = model.embed_file(path, postprocess=False).embeddings.astype(np.float16)  # type: ignore[attr-defined]
            m, nf = np.mean(e, axis=0), len(e)  # a float16 mean, as fadtk's
            sf_ = np.cov(e, rowvar=False) * (nf - 1)
            delta = m - mu
            mu = mu + nf / (n + nf) * delta
            s = s + sf_ + np.outer(delta, delta) * n * nf / (n + nf)
            n += nf
        return mu, s / (n - 1)

    (mu1, c1), (mu2, c2) = stats(bg), stats(ev)
    w, v = linalg.eig(c1 @ c2)
    covmean = ((v * np.lib.scimath.sqrt(w)) @ np.linalg.inv(v)).real
    d = mu1 - mu2
    return float(d @ d + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


def commands(
    root: Path, bg: Path, ev: Path, workers: tuple[int, ...], peer_python: Path | None
) -> dict[str, list[str]]:
    """The command line of each case: ``vggish fad`` per mode and worker count, and the peer."""
    ours, theirs = export_weights(root)
    vggish = [sys.executable, "-m", "vggish", "fad", str(bg), str(ev), "--weights", str(ours), "--json"]
    cases = {f"vggish fad, default mode, --workers {n}": [*vggish, "--workers", str(n)] for n in workers}
    cases["vggish fad --compat google (twice the examples)"] = [*vggish, "--compat", "google"]
    if peer_python is not None:
        peer = root / "peer.py"
        peer.write_text(PEER_SCRIPT)
        cases[PEER] = [str(peer_python), str(peer), str(theirs), str(bg), str(ev)]
    return cases


def measure(cases: dict[str, list[str]], repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds and the FAD of each case: a warm-up round, then ``repeats`` rounds in turns."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    values: dict[str, float] = {}
    for round_ in range(repeats + 1):  # round 0 warms up
        for name, cmd in cases.items():
            seconds, values[name] = timed(cmd)
            if round_:
                times[name].append(seconds)
            log(f"fad round {round_} {name}: {seconds:.1f} s, FAD {values[name]:.6f}")
    return {name: statistics.median(t) for name, t in times.items()}, values


def run(
    minutes: float,
    repeats: int,
    workers: tuple[int, ...] = (0,),
    peer_python: Path | None = PEER_PYTHON,
) -> list[Row]:
    """Times every case on two new sets of ``minutes`` of audio each; one row per case.

    Args:
        minutes: audio per set (30 s files).
        repeats: timed rounds after the warm-up round (medians).
        workers: the ``--workers`` counts of the default mode.
        peer_python: the peer venv's python; None, or a path that does not exist, runs this
            project's modes only (their rows say how to install the peer).

    Returns:
        A row per case, seconds end to end (median), with the FAD it gave in its note and, when
        the peer ran, how many times faster than the peer it is as its ratio.
    """
    if peer_python is not None and not peer_python.is_file():
        peer_python = None
    with tempfile.TemporaryDirectory(prefix="bench-fad-") as tmp:
        root = Path(tmp)
        bg, ev = make_sets(root, minutes)
        medians, values = measure(commands(root, bg, ev, workers, peer_python), repeats)
    reference = medians.get(PEER)
    setup = f"2 sets of {minutes:g} min, 16 kHz WAV; fresh process, median of {repeats}"
    rows = []
    for name, seconds in medians.items():
        note = f"FAD {values[name]:.6f}; {setup}"
        if reference is None:
            note += f"; {PEER} not installed (`make bench-peers`)"
        ratio = None if reference is None else reference / seconds
        rows.append(Row(SECTION, name, seconds, "s", note, ratio=ratio))
    if reference is None:
        rows.append(Row(SECTION, PEER, "not installed: make bench-peers"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--peer-python",
        type=Path,
        default=PEER_PYTHON,
        help="python of the venv with frechet-audio-distance (default: .venv-peers, `make bench-peers`)",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="audio per set (default: 10)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[0], help="vggish fad --workers counts")
    args = parser.parse_args()
    header = machine_line()
    rows = run(args.minutes, args.repeats, tuple(args.workers), args.peer_python)
    print(f"# vggish fad against {PEER}, end to end in fresh processes, same weights")
    print(f"# {header}\n")
    print(markdown_table(rows))
    print_fadtk_value(args.minutes)


def print_fadtk_value(minutes: float) -> None:
    """fadtk's FAD on the same sets (made again: they are deterministic), emulated."""
    import warnings

    from vggish.network.loader import load_model

    with tempfile.TemporaryDirectory(prefix="bench-fad-") as tmp:
        root = Path(tmp)
        bg, ev = make_sets(root, minutes)
        ours, _ = export_weights(root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load_model(str(ours), backend="torch")
        value = fadtk_semantics(model, bg, ev)
    print(f"\nfadtk 1.1.0 (emulated from its documented semantics): FAD {value:.6f}")


if __name__ == "__main__":
    main()
