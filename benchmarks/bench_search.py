"""Find similar sounds: search latency over HTTP and recall@10, embedded store (SQLite + exact
NumPy in memory) and PostgreSQL + pgvector (HNSW), side by side on the same data; and what adding
audio costs beside embedding it.

Data: ``--items`` items of ``--segments`` segment vectors each, drawn around ``--clusters`` unit
centres with per-dimension noise ``--sigma`` (clustered like real embeddings, hard for a graph
index: many near neighbours at similar distances). Each store is filled through the library,
then a real ``vggish serve`` on loopback answers ``POST /v1/collections/NAME/search`` with a JSON
``embedding`` (clip and segment level), one request at a time over one kept-alive connection.
Recall@10 is against exact cosines computed here in NumPy (float64). The audio rows time
``POST /v1/embeddings`` and ``POST /v1/collections/NAME/items`` of the same clips, alternating.

    python benchmarks/bench_search.py [--items 50000] [--segments 4] [--queries 200] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "app")]

from service_helpers import clip, uvicorn_server  # noqa: E402

from vggish.heads import FeatureSpec  # noqa: E402
from vggish.search import Item, open_collections  # noqa: E402

K = 10
D = 128
SPEC = FeatureSpec("random", 0.96, True, "reference")  # the server's random weights: no 409


def cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return line
    return "flags: unknown"


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(items, segments, 128) float32 segments and (queries, 128) query vectors."""
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((args.clusters, D)))
    which = rng.integers(0, args.clusters, args.items)
    noise = args.sigma * rng.standard_normal((args.items, args.segments, D))
    segments = (centres[which][:, None, :] + noise).astype(np.float32)
    q_centres = centres[rng.integers(0, args.clusters, args.queries)]
    queries = q_centres + args.sigma * rng.standard_normal((args.queries, D))
    return segments, queries.astype(np.float32)


def exact(segments: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-10 item indices per query, clip level and segment level (float64 cosines)."""
    clips = unit(segments.astype(np.float64).mean(axis=1))
    q = unit(queries.astype(np.float64))
    clip_top = np.argsort(-(q @ clips.T), axis=1)[:, :K]
    segs = unit(segments.astype(np.float64)).reshape(-1, D)
    best = (q @ segs.T).reshape(len(q), *segments.shape[:2]).max(axis=2)
    return clip_top, np.argsort(-best, axis=1)[:, :K]


def fill(location: str, segments: np.ndarray, batch: int = 1000) -> float:
    store = open_collections(location)
    started = time.perf_counter()
    for start in range(0, len(segments), batch):
        items = [Item.of(f"i{n}", segments[n]) for n in range(start, min(start + batch, len(segments)))]
        store.add("bench", items, SPEC)
    return time.perf_counter() - started


def timed_searches(
    base: str, queries: np.ndarray, level: str, truth: np.ndarray
) -> tuple[float, float, float]:
    """p50 and p95 ms of searches over HTTP (after 20 warm-up requests), and recall@10."""
    times, hits = [], 0
    with httpx.Client(base_url=base, timeout=120) as http:
        for q in queries[:20]:
            http.post(f"/v1/collections/bench/search?k={K}&level={level}", json={"embedding": q.tolist()})
        for q, want in zip(queries, truth, strict=True):
            started = time.perf_counter()
            r = http.post(f"/v1/collections/bench/search?k={K}&level={level}", json={"embedding": q.tolist()})
            times.append(time.perf_counter() - started)
            r.raise_for_status()
            got = {int(x["id"][1:]) for x in r.json()["results"]}
            hits += len(got & set(want.tolist()))
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), hits / (K * len(queries))


def audio_ratio(base: str, rounds: int) -> tuple[float, float]:
    """Median seconds of embedding 4 clips of 10 s, and of adding the same clips, alternating."""
    files = [("file", (f"c{n}.wav", clip(10.0, seed=n))) for n in range(4)]
    embed, add = [], []
    with httpx.Client(base_url=base, timeout=300) as http:
        for r in range(rounds + 1):
            started = time.perf_counter()
            http.post("/v1/embeddings?pad=true", files=files).raise_for_status()
            middle = time.perf_counter()
            http.post("/v1/collections/audio/items", files=files).raise_for_status()
            if r:  # the first round warms up
                embed.append(middle - started)
                add.append(time.perf_counter() - middle)
    return float(np.median(embed)), float(np.median(add))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--segments", type=int, default=4, help="segments per item")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--clusters", type=int, default=500)
    ap.add_argument("--sigma", type=float, default=0.12)
    ap.add_argument("--audio-rounds", type=int, default=5)
    ap.add_argument("--stores", default="embedded,postgres", help="comma-separated: embedded, postgres")
    ap.add_argument("--quick", action="store_true", help="2,000 items, 50 queries, no PostgreSQL")
    args = ap.parse_args()
    if args.quick:
        args.items, args.queries, args.audio_rounds = 2000, 50, 2
    print(cpu_flags())
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()}")
    segments, queries = make_data(args)
    clip_truth, segment_truth = exact(segments, queries)
    print(
        f"{args.items} items x {args.segments} segments, {args.queries} queries, "
        f"{args.clusters} clusters, sigma {args.sigma}"
    )
    rows = []
    stores = ["embedded"] if args.quick else args.stores.split(",")
    for kind in stores:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"VGGISH_DATA_DIR": tmp, "VGGISH_SEARCH_MAX_K": str(K)}
            server = None
            if kind == "postgres":
                from pgvector_server import remove, start_pgvector

                server = start_pgvector()
                env["VGGISH_DATABASE_URL"] = server.url()
            try:
                location = env.get("VGGISH_DATABASE_URL", tmp)
                filled = fill(location, segments)
                with uvicorn_server(**env) as running:
                    for level, truth in (("clip", clip_truth), ("segment", segment_truth)):
                        p50, p95, recall = timed_searches(running.base, queries, level, truth)
                        rows.append(
                            (kind, level, f"{filled:.0f} s", f"{p50:.1f}", f"{p95:.1f}", f"{recall:.3f}")
                        )
                    if kind == "embedded":
                        embed_s, add_s = audio_ratio(running.base, args.audio_rounds)
            finally:
                if server is not None:
                    remove(server)
    print(f"load average at end: {os.getloadavg()}\n")
    print("| store | level | fill (library) | p50 ms | p95 ms | recall@10 |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if "embedded" in stores:
        print(
            f"\naudio, 4 clips of 10 s per request (median of {args.audio_rounds}): embed {embed_s:.2f} s, "
            f"add to a collection {add_s:.2f} s, ratio {add_s / embed_s:.2f}"
        )


if __name__ == "__main__":
    main()
