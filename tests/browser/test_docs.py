"""``/docs`` and ``/redoc`` work offline: Swagger UI and ReDoc come from the service, nothing else loads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from browser_helpers import open_page, screenshot
from fastapi.testclient import TestClient

from tests.app.service_helpers import Server, running_app

OPERATIONS = [  # (method, path) pairs every docs page must show
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/heads"),
    ("POST", "/v1/heads/{name}/classify"),
]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with running_app() as c:
        yield c


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_html_names_no_other_host(client: TestClient, path: str) -> None:
    """The pages' HTML loads scripts, styles and icons from this server only (no CDN, no fonts)."""
    html = client.get(path).text
    assert client.get(path).status_code == 200
    assert re.findall(r"(?:src|href)=\"(https?:)?//", html) == []
    for asset in re.findall(r"(?:src|href)=\"([^\"]+)\"", html):
        assert asset.startswith("/docs-assets/"), asset
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 1000, asset


def test_docs_assets_types_and_openapi(client: TestClient) -> None:
    """Scripts are served as JavaScript, the stylesheet as CSS; /openapi.json stays; pages are hidden."""
    assert "javascript" in client.get("/docs-assets/swagger-ui-bundle.js").headers["content-type"]
    assert "javascript" in client.get("/docs-assets/redoc.standalone.js").headers["content-type"]
    assert client.get("/docs-assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    redoc = client.get("/docs-assets/redoc.standalone.js").content
    assert len(redoc) > 500_000
    assert b"cdn.redoc.ly" not in redoc  # its logo URL, the one thing it loads from elsewhere
    assert client.get("/docs/oauth2-redirect").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/v1/embeddings" in schema["paths"]
    assert not {"/", "/docs", "/redoc"} & set(schema["paths"])


@pytest.mark.browser
def test_swagger_ui_renders_operations_offline(browser: Any, server: Server) -> None:
    """Chromium opens /docs: every operation is rendered and every request stayed on the server."""
    session = open_page(browser, server, "/docs")
    page = session.page
    page.wait_for_selector(".opblock-summary-path")
    rendered = page.eval_on_selector_all(
        ".opblock-summary",
        "blocks => blocks.map(b => [b.querySelector('.opblock-summary-method').textContent.trim(),"
        " b.querySelector('.opblock-summary-path').textContent.replace(/\\u200b/g, '').trim()])",
    )
    for operation in OPERATIONS:
        assert list(operation) in rendered, rendered
    assert page.title() == "VGGish - Swagger UI"
    screenshot(page, "docs-swagger")
    session.log.assert_clean()
    assert any(u.endswith("/openapi.json") for u in session.log.requests)
    page.context.close()


@pytest.mark.browser
def test_redoc_renders_operations_offline(browser: Any, server: Server) -> None:
    """Chromium opens /redoc (3 panels): every operation's endpoint is rendered, nothing left the server."""
    session = open_page(browser, server, "/redoc", viewport={"width": 1600, "height": 900})
    page = session.page
    page.wait_for_selector(".http-verb")
    rendered = page.eval_on_selector_all(
        ".http-verb", "vs => vs.map(v => [v.textContent.trim().toUpperCase(), v.nextSibling?.textContent])"
    )
    for operation in OPERATIONS:
        assert list(operation) in rendered, rendered
    assert page.title() == "VGGish - ReDoc"
    screenshot(page, "docs-redoc")
    session.log.assert_clean()
    page.context.close()
