"""Live mode end to end: Chromium's fake microphone plays real speech into the page, which streams it
to ``/v1/stream`` and shows the embeddings and labels as they come; the recording is then analysed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser_helpers import WAIT_MS, canvas_colours, dataset, floats, launch, open_page, screenshot

from tests.app.service_helpers import Server

pytestmark = pytest.mark.browser
LIVE_EXAMPLES = 3  # windows to wait for before pressing Stop


@pytest.fixture(scope="module")
def microphone_browser(playwright: Any, recordings: dict[str, Path]) -> Iterator[Any]:
    """Chromium whose microphone plays the speech recording (looped), permission granted."""
    chromium = launch(
        playwright,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={recordings['speech']}",
    )
    yield chromium
    chromium.close()


def test_microphone_streams_embeddings_and_labels(microphone_browser: Any, server: Server) -> None:
    """Record: embeddings and the head's labels arrive live; Stop: the server's count matches, and the
    recording, analysed as a file, starts with the same embedding."""
    session = open_page(microphone_browser, server, permissions=["microphone"])
    page = session.page
    page.wait_for_selector("body[data-server='ready']")
    page.select_option("#head", "sounds")
    page.click("#record")
    page.wait_for_function(
        "([n]) => { const d = document.getElementById('live').dataset; return d.error || d.examples >= n; }",
        arg=[LIVE_EXAMPLES],
        timeout=WAIT_MS,
    )
    assert "error" not in dataset(page, "#live"), page.inner_text("#error")
    assert page.get_attribute("figure[data-plot='live-heatmap']", "data-state") == "drawn"
    assert page.get_attribute("figure[data-plot='live-scores']", "data-state") == "drawn"
    assert canvas_colours(page, "live-scores") >= 4
    assert page.get_attribute("#live-scores", "aria-label").startswith("Live head scores over")
    labels = page.eval_on_selector_all("#live-labels li", "items => items.map(i => i.textContent)")
    assert {item.split(":")[0] for item in labels} == {"speech", "noise", "chime"}
    scores = [float(item.split(":")[1]) for item in labels]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=2e-3)

    page.click("#stop")
    page.wait_for_selector("#live[data-ended]", state="attached", timeout=WAIT_MS)
    page.wait_for_selector('#results[data-state="done"]', timeout=WAIT_MS)
    live, recorded = dataset(page, "#live"), dataset(page, "#results")
    assert int(live["examples"]) >= LIVE_EXAMPLES
    assert live["endExamples"] == live["examples"] == recorded["frames"]
    first_live, first_file = floats(live["first"]), floats(recorded["embedding0"])
    np.testing.assert_allclose(first_live, first_file, atol=0.01 * np.abs(first_file).max())
    label = page.get_attribute("#live-heatmap", "aria-label")
    assert label.startswith(f"Live embeddings heatmap: {live['examples']} frames × 128 dimensions")

    assert session.log.sockets == [server.base.replace("http://", "ws://") + "/v1/stream"]
    screenshot(page, "live")
    session.log.assert_clean()
    page.context.close()


def test_stream_errors_are_shown_verbatim(microphone_browser: Any, keyed_server: Server) -> None:
    """A wrong key: the stream's 401 error is shown as worded and the page is ready to record again."""
    session = open_page(microphone_browser, keyed_server, permissions=["microphone"])
    page = session.page
    page.wait_for_selector("body[data-server]")
    page.click(".key summary")
    page.fill("#api-key", "wrong-key")
    page.click("#use-key")
    page.click("#record")
    page.wait_for_selector("#live[data-error]", state="attached", timeout=WAIT_MS)
    live = dataset(page, "#live")
    assert live["errorStatus"] == "401"  # from the error message or the 4401 close code
    assert page.inner_text("#error .title") == live["error"]
    assert page.inner_text("#error .detail")
    assert page.is_enabled("#record") and page.is_disabled("#stop")
    assert session.log.foreign() == []
    assert session.log.page_errors == []
    page.context.close()
