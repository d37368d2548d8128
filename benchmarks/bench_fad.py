"""``vggish fad`` end to end against the ``frechet-audio-distance`` package (0.3.4, VGGish), side by
side on the same machine, audio and weights; and the FAD each tool gives (docs/fad.md's table).

Two sets of ``--minutes`` of audio each (16 kHz mono int16 WAV, 30 s files of tones, chirps and
noise; the evaluation set differs in pitch and noise) are made in a temporary folder. Both tools
use the same numbers: our random weights are saved as a weights file and exported in
torchvggish's state-dict layout for the other package.

The other package runs in its own virtual environment (``--peer-python``, e.g.
``/work/scratch/fadvenv/bin/python`` with ``frechet-audio-distance`` and ``torchvggish`` 0.2
installed ``--no-deps``). It is run offline: ``torch.hub.load`` (which would fetch
harritaylor/torchvggish from GitHub) is replaced by torchvggish 0.2's network with the exported
weights and the hub model's ``forward(audio, sr)`` (``waveform_to_examples`` then the network),
and ``laion_clap``, ``encodec`` and ``torchlibrosa``, which it imports at load for other models,
are empty stand-ins (their import time is not counted, which favours it).

Each command is a fresh process timed from start to exit (imports, model loading, decoding,
embedding, statistics, distance). Each runs once to warm up (the files into the page cache), then
they take turns ``--repeats`` times; medians are reported.

fadtk is not run (it needs torchaudio, whose builds need another torch than this machine's, and
fetches its model from GitHub): its FAD is computed here from its documented semantics (per-file
float16 embeddings, Chan-merged statistics, eigen-decomposition square root), marked as such.

Usage: ``python benchmarks/bench_fad.py --peer-python /work/scratch/fadvenv/bin/python``
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

FILE_SECONDS = 30
RATE = 16000

PEER = textwrap.dedent(
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


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, dict[str, object]]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peer-python", required=True, help="python of the venv with frechet-audio-distance")
    parser.add_argument("--minutes", type=float, default=10.0, help="audio per set (default: 10)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="vggish fad --workers")
    args = parser.parse_args()

    import os
    import warnings

    from _common import machine_line

    from vggish.network.loader import load_model

    with tempfile.TemporaryDirectory(prefix="bench-fad-") as tmp:
        root = Path(tmp)
        bg, ev = make_sets(root, args.minutes)
        ours_w, theirs_w = export_weights(root)
        peer = root / "peer.py"
        peer.write_text(PEER)
        env = dict(os.environ)
        vggish = [sys.executable, "-m", "vggish", "fad", str(bg), str(ev), "--weights", str(ours_w), "--json"]
        runs = {
            f"vggish fad (default mode, --workers {args.workers})": (
                [*vggish, "--workers", str(args.workers)],
                env,
            ),
            "vggish fad --compat google": ([*vggish, "--compat", "google"], env),
            "frechet-audio-distance 0.3.4": (
                [args.peer_python, str(peer), str(theirs_w), str(bg), str(ev)],
                None,
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        values: dict[str, float] = {}
        for round_ in range(args.repeats + 1):  # round 0 warms up
            for name, (cmd, cmd_env) in runs.items():
                seconds, out = timed(cmd, cmd_env)
                values[name] = float(out["fad"])  # type: ignore[arg-type]
                if round_:
                    times[name].append(seconds)
                print(
                    f"[bench] round {round_} {name}: {seconds:.1f} s, FAD {values[name]:.6f}", file=sys.stderr
                )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load_model(str(ours_w), backend="torch")
        values["fadtk 1.1.0 (emulated from its documented semantics)"] = fadtk_semantics(model, bg, ev)

    peer_time = statistics.median(times["frechet-audio-distance 0.3.4"])
    print(f"machine: {machine_line()}")
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    print("CPU flags: " + " ".join(flags))
    print(f"\ntwo sets of {args.minutes:g} min of 16 kHz mono WAV ({FILE_SECONDS} s files), same weights\n")
    print("| pipeline | seconds end to end (median) | vs frechet-audio-distance | FAD |")
    print("|---|---|---|---|")
    for name, value in values.items():
        if name in times:
            t = statistics.median(times[name])
            print(f"| {name} | {t:.1f} | {peer_time / t:.2f}x | {value:.6f} |")
        else:
            print(f"| {name} | not run | | {value:.6f} |")


if __name__ == "__main__":
    main()
