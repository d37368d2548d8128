"""The page at ``/`` in headless Chromium: real recordings uploaded to a real server on loopback.

Each test compares what the page shows (its data-* copies and its numbers table) with the API's own
answer for the same file, checks that the canvases hold a picture, and that no request left the machine.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from browser_helpers import (
    API_KEY,
    WAIT_MS,
    Browsing,
    analyse,
    api_post,
    canvas_colours,
    dataset,
    floats,
    open_page,
    plot_states,
    screenshot,
)

from tests.app.service_helpers import Server

pytestmark = pytest.mark.browser

# A value differs in its last float32 digits when the server batches the page's request with others.
CLOSE = {"rtol": 1e-4, "atol": 1e-4}
LEAST_COLOURS = {"waveform": 3, "embeddings": 50, "postprocessed": 50, "projection": 5, "scores": 4}
"""Distinct colours a drawn canvas holds at least (axes alone give 2-3): the plots but the log-mel."""


def test_page_loads_offline_and_shows_random_weights(browsing: Browsing) -> None:
    """The page names the weights, shouts when they are random, lists the heads; all from the server."""
    page = browsing.page
    assert page.is_visible("#random-banner")
    assert "Random weights" in page.inner_text("#random-banner")
    assert page.inner_text("#weights").startswith("random")
    assert page.get_attribute("body", "data-weights") == "random"
    options = page.eval_on_selector_all("#head option", "os => os.map(o => o.value)")
    assert options == ["", "sounds", "sounds-mlp"]
    assert page.is_hidden("#results") and page.is_hidden("#error")
    browsing.log.assert_clean()
    answer = httpx.get(browsing.server.base + "/")
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")


def test_page_is_labelled_for_keyboard_and_screen_readers(browsing: Browsing) -> None:
    """Every control has a label, every plot is an image with a text alternative, news is announced."""
    page = browsing.page
    unlabelled = page.eval_on_selector_all(
        "input, select", "els => els.filter(e => e.labels.length === 0).map(e => e.id)"
    )
    assert unlabelled == []
    canvases = page.eval_on_selector_all("canvas", "cs => cs.map(c => [c.getAttribute('role'), c.ariaLabel])")
    assert canvases and all(role == "img" and label for role, label in canvases)
    assert page.get_attribute("#status", "role") == "status"
    assert page.get_attribute("#status", "aria-live") == "polite"
    assert page.get_attribute("#error", "role") == "alert"
    stops: list[str] = []
    while "SUMMARY" not in stops and len(stops) < 15:
        page.keyboard.press("Tab")
        stops.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    wanted = ["file-a", "record", "head", "file-b", "SUMMARY"]
    assert [s for s in stops if s in wanted] == wanted, stops
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focused control is visibly marked
    page.keyboard.press("Enter")  # opens the API key details
    assert page.is_visible("#api-key")


def test_upload_draws_plots_with_the_api_numbers(browsing: Browsing, recordings: dict[str, Path]) -> None:
    """Real speech, a head chosen: waveform, embeddings, 8-bit features, PCA, scores; the API's numbers."""
    page, base, speech = browsing.page, browsing.server.base, recordings["speech"]
    page.select_option("#head", "sounds")
    shown = analyse(page, speech)
    states = plot_states(page)
    assert {name: states[name] for name in LEAST_COLOURS} == dict.fromkeys(LEAST_COLOURS, "drawn")
    for canvas, least in LEAST_COLOURS.items():
        assert canvas_colours(page, canvas) >= least, canvas

    api = api_post(base, "/v1/embeddings", speech, postprocess="true")
    frames = len(api["embeddings"])
    assert frames == 10  # 10.03 s of speech
    assert int(shown["frames"]) == frames
    assert float(shown["duration"]) == pytest.approx(api["duration"])
    np.testing.assert_allclose(floats(shown["embedding0"]), api["embeddings"][0][:8], **CLOSE)
    assert floats(shown["postprocessed0"]).tolist() == pytest.approx(api["postprocessed"][0][:8], abs=1)
    label = page.get_attribute("#embeddings", "aria-label")
    assert label.startswith(f"Embeddings heatmap: {frames} frames × 128 dimensions")

    table = page.eval_on_selector_all(
        "#numbers-table tbody tr", "rows => rows.map(r => r.cells[3].textContent)"
    )
    assert len(table) == frames
    e0 = [float(text.replace("−", "-")) for text in table]
    np.testing.assert_allclose(e0, [e[0] for e in api["embeddings"]], atol=1e-3)

    classified = api_post(base, "/v1/heads/sounds/classify", speech)
    best = classified["frames"][0]["labels"][0]
    label, score = shown["labels0"].split(":")
    assert label == best["label"]
    assert float(score) == pytest.approx(best["score"], abs=1e-4)
    legend = page.eval_on_selector_all("#scores-legend li", "items => items.map(i => i.textContent)")
    assert [item.split(":")[0] for item in legend] == [lab["label"] for lab in classified["labels"]]

    screenshot(page, "page-upload")
    assert browsing.log.foreign() == []
    assert browsing.log.page_errors == []
    assert browsing.log.console_errors == []


def test_every_plot_drawn_with_log_mel_from_the_api(browsing: Browsing, recordings: dict[str, Path]) -> None:
    """With /v1/features: the log-mel examples too; every plot drawn; console clean; light and dark shots."""
    page, base, speech = browsing.page, browsing.server.base, recordings["speech"]
    page.select_option("#head", "sounds")
    page.set_input_files("#file-b", str(recordings["alarm"]))  # before the clip: compared once both are in
    shown = analyse(page, speech)
    page.wait_for_selector('figure[data-plot="similarity"][data-state="drawn"]', timeout=WAIT_MS)
    assert set(plot_states(page).values()) - {None} == {"drawn"}, plot_states(page)
    assert canvas_colours(page, "spectrogram") >= 50

    api = api_post(base, "/v1/features", speech, encoding="base64")
    assert shown["featuresShape"] == ",".join(map(str, api["shape"]))
    assert api["shape"] == [10, 96, 64]
    first = np.frombuffer(base64.b64decode(api["examples"][0]), dtype="<f4")
    np.testing.assert_allclose(floats(shown["features0"]), first[:8], rtol=1e-6)
    label = page.get_attribute("#spectrogram", "aria-label")
    assert label.startswith("Log-mel spectrogram: 10 examples × 96 frames × 64 mel bands")

    page.click("#numbers summary")
    screenshot(page, "page")
    page.emulate_media(color_scheme="dark")
    page.wait_for_function("() => matchMedia('(prefers-color-scheme: dark)').matches")
    assert canvas_colours(page, "spectrogram") >= 50
    screenshot(page, "page-dark")
    browsing.log.assert_clean()


def test_two_clips_similarity_matches_the_api(browsing: Browsing, recordings: dict[str, Path]) -> None:
    """Speech (WAV) against an alarm (stereo Ogg Vorbis): pooled and frame × frame cosines are the API's."""
    page, base = browsing.page, browsing.server.base
    analyse(page, recordings["speech"])
    assert plot_states(page)["similarity"] == "idle"
    page.set_input_files("#file-b", str(recordings["alarm"]))
    page.wait_for_selector('figure[data-plot="similarity"][data-state="drawn"]', timeout=WAIT_MS)
    shown = dataset(page, "#results")

    a = np.array(api_post(base, "/v1/embeddings", recordings["speech"])["embeddings"], dtype=np.float64)
    b = np.array(api_post(base, "/v1/embeddings", recordings["alarm"])["embeddings"], dtype=np.float64)
    unit_a = a / np.linalg.norm(a, axis=1, keepdims=True)
    unit_b = b / np.linalg.norm(b, axis=1, keepdims=True)
    pooled = float(a.mean(0) @ b.mean(0) / np.linalg.norm(a.mean(0)) / np.linalg.norm(b.mean(0)))
    assert shown["similarityShape"] == f"{len(a)},{len(b)}" == "10,6"
    assert float(shown["similarity00"]) == pytest.approx(float(unit_a[0] @ unit_b[0]), abs=1e-4)
    assert float(shown["pooled"]) == pytest.approx(pooled, abs=1e-4)
    assert float(page.inner_text("#pooled")) == pytest.approx(pooled, abs=2e-4)
    assert canvas_colours(page, "similarity") >= 10
    assert "10 frames of speech.wav × 6 frames of alarm-clock-elapsed.oga" in page.get_attribute(
        "#similarity", "aria-label"
    )
    assert browsing.log.foreign() == []
    assert browsing.log.page_errors == []


def test_choosing_a_head_classifies_the_clip(browsing: Browsing, recordings: dict[str, Path]) -> None:
    """Without a head the scores wait; choosing one asks the API and draws its labels."""
    page, base, alarm = browsing.page, browsing.server.base, recordings["alarm"]
    analyse(page, alarm)
    assert plot_states(page)["scores"] == "idle"
    page.select_option("#head", "sounds-mlp")
    page.wait_for_selector('figure[data-plot="scores"][data-state="drawn"]', timeout=WAIT_MS)
    classified = api_post(base, "/v1/heads/sounds-mlp/classify", alarm)
    label, score = dataset(page, "#results")["labels0"].split(":")
    assert label == classified["frames"][0]["labels"][0]["label"]
    assert float(score) == pytest.approx(classified["frames"][0]["labels"][0]["score"], abs=1e-4)
    assert canvas_colours(page, "scores") >= 4
    page.select_option("#head", "")
    page.wait_for_selector('figure[data-plot="scores"][data-state="idle"]')
    assert browsing.log.page_errors == []


def test_api_errors_are_shown_verbatim(browsing: Browsing, tmp_path: Path) -> None:
    """A file that is not audio: the page shows the API's problem title and detail, word for word."""
    page, base = browsing.page, browsing.server.base
    fake = tmp_path / "notes.wav"
    fake.write_text("these are meeting notes, not audio\n" * 20)
    page.set_input_files("#file-a", str(fake))
    page.wait_for_selector('#results[data-state="done"]', timeout=WAIT_MS)
    answer = httpx.post(base + "/v1/embeddings", files=[("file", (fake.name, fake.read_bytes()))])
    problem = answer.json()
    assert answer.status_code >= 400 and problem["title"] and problem["detail"]
    assert page.inner_text("#error .title") == problem["title"]
    assert page.inner_text("#error .detail") == problem["detail"]
    assert plot_states(page)["embeddings"] == "error"
    message = page.inner_text('figure[data-plot="embeddings"] .plot-message')
    assert message == f"{problem['title']}: {problem['detail']}"
    assert browsing.log.foreign() == []
    assert browsing.log.page_errors == []


def test_api_key_is_sent_as_a_header_and_kept_in_the_tab(
    browser: Any, keyed_server: Server, recordings: dict[str, Path]
) -> None:
    """A server with keys: no key, a wrong key, then the right one; the key never goes in a URL."""
    session = open_page(browser, keyed_server)
    page, base = session.page, keyed_server.base
    page.wait_for_selector("body[data-server='error']")
    missing = httpx.get(base + "/v1/models").json()
    assert page.inner_text("#error .title") == missing["title"]
    assert page.inner_text("#error .detail") == missing["detail"]

    page.click(".key summary")
    page.fill("#api-key", "wrong-key")
    page.click("#use-key")
    wrong = httpx.get(base + "/v1/models", headers={"Authorization": "Bearer wrong-key"}).json()
    page.wait_for_selector(f"#error .detail:text-is('{wrong['detail']}')")
    assert page.inner_text("#error .title") == wrong["title"]

    page.fill("#api-key", API_KEY)
    page.press("#api-key", "Enter")
    page.wait_for_selector("body[data-server='ready']")
    assert page.is_visible("#random-banner") and page.is_hidden("#error")
    assert page.evaluate("sessionStorage.length") == 0  # not remembered unless asked
    shown = analyse(page, recordings["alarm"])
    assert shown["frames"] == "6"
    assert session.log.authorization[-1] == f"Bearer {API_KEY}"
    assert all(API_KEY not in url for url in session.log.requests)

    page.check("#remember-key")
    page.click("#use-key")
    page.wait_for_function(f"() => sessionStorage.getItem('vggish.apiKey') === '{API_KEY}'")
    page.reload()
    page.wait_for_selector("body[data-server='ready']")
    assert page.input_value("#api-key") == API_KEY
    assert session.log.foreign() == []
    assert session.log.page_errors == []
    screenshot(page, "page-api-key")
    page.context.close()


def test_dropping_a_file_analyses_it(browsing: Browsing, recordings: dict[str, Path]) -> None:
    """A file dropped on the drop zone is analysed like a chosen one."""
    page, alarm = browsing.page, recordings["alarm"]
    data = base64.b64encode(alarm.read_bytes()).decode()
    page.evaluate(
        """([name, data]) => {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], name, { type: "audio/ogg" }));
          const zone = document.getElementById("drop");
          const options = { dataTransfer: transfer, bubbles: true, cancelable: true };
          zone.dispatchEvent(new DragEvent("dragover", options));
          zone.dispatchEvent(new DragEvent("drop", options));
        }""",
        [alarm.name, data],
    )
    page.wait_for_selector(
        f'#results[data-state="done"] #clip-title:text-is("{alarm.name}")', timeout=WAIT_MS
    )
    shown = dataset(page, "#results")
    api = api_post(browsing.server.base, "/v1/embeddings", alarm)
    assert shown["frames"] == str(len(api["embeddings"])) == "6"
    np.testing.assert_allclose(floats(shown["embedding0"]), api["embeddings"][0][:8], **CLOSE)
    assert browsing.log.page_errors == []
