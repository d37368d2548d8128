"""The page's "similar in collection" panel in headless Chromium: after a real recording is
analysed, the chosen collection's best matches with their scores and matching segments' times,
as the API answers the same search."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from browser_helpers import WAIT_MS, analyse, open_page, screenshot

from tests.app.service_helpers import Server

pytestmark = pytest.mark.browser


def test_similar_clips_are_listed_with_scores_and_times(
    browser: object, server: Server, recordings: dict[str, Path]
) -> None:
    for path in (recordings["speech"], recordings["alarm"]):
        files = [("file", (path.name, path.read_bytes()))]
        httpx.post(
            f"{server.base}/v1/collections/page-index/items", files=files, timeout=120
        ).raise_for_status()
    browsing = open_page(browser, server)
    page = browsing.page
    try:
        page.wait_for_selector('#collection option[value="page-index"]', state="attached", timeout=WAIT_MS)
        assert page.get_attribute("#similar", "data-state") == "idle"
        page.select_option("#collection", "page-index")
        analyse(page, recordings["speech"])
        page.wait_for_selector('#similar[data-state="done"]', timeout=WAIT_MS)
        shown = page.eval_on_selector_all("#similar-list li", "items => items.map(i => ({...i.dataset}))")
        embedded = httpx.post(
            f"{server.base}/v1/embeddings",
            files=[("file", (recordings["speech"].name, recordings["speech"].read_bytes()))],
            timeout=120,
        ).json()["data"][0]
        body = {"embeddings": embedded["embeddings"], "timestamps": embedded["timestamps"]}
        answer = httpx.post(
            f"{server.base}/v1/collections/page-index/search",
            params={"level": "segment"},
            json=body,
            timeout=120,
        ).json()["results"]
        assert (
            [s["id"] for s in shown] == [a["id"] for a in answer] == ["speech.wav", "alarm-clock-elapsed.oga"]
        )
        for s, a in zip(shown, answer, strict=True):
            assert float(s["score"]) == pytest.approx(a["score"], abs=1e-4)
            assert (float(s["start"]), float(s["end"])) == pytest.approx(
                (a["segment"]["start"], a["segment"]["end"])
            )
            assert (float(s["queryStart"]), float(s["queryEnd"])) == pytest.approx(
                (a["query_segment"]["start"], a["query_segment"]["end"])
            )
        assert float(shown[0]["score"]) == pytest.approx(1.0, abs=1e-4)  # the clip finds itself
        text = page.inner_text("#similar-list li:first-child")
        assert "speech.wav" in text and " s" in text and "this clip" in text
        assert "best matching segments" in page.inner_text("#similar-note")
        screenshot(page, "similar-in-collection")
        browsing.log.assert_clean()
    finally:
        page.context.close()
