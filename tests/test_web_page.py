"""The page `sprig serve` serves at /, in a real browser (Playwright driving Debian's chromium, headless): search with
the keyboard, ranked hits with highlighted terms and each retriever's rank, an answer whose tokens stream in, a
citation that opens its passage, and API errors shown. SPRIG_SCREENSHOTS=docs/screenshots saves one PNG per state."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.test_server import REPO, Server

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (apt-get install chromium); nothing is downloaded here
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = f"chromium not found at {CHROMIUM} (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tiny_index, tmp_path_factory):
    index = tmp_path_factory.mktemp("page") / "idx"
    shutil.copytree(tiny_index.index_dir, index)
    srv = Server(index, index.parent / "server.log", SPRIG_GENERATOR__MAX_NEW_TOKENS="24")
    yield srv
    srv.stop()


def test_search_answer_and_cited_passage(browser, server, tmp_path):
    shots = Path(os.environ.get("SPRIG_SCREENSHOTS") or tmp_path)
    shots = shots if shots.is_absolute() else REPO / shots
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 960, "height": 720})
    page.goto(server.url + "/")
    page.wait_for_selector("#mode option[value=hybrid]", state="attached")
    assert page.inner_text("#index-info").startswith("12 passages")

    # Keyboard: the focus moves query -> mode -> k -> Search, and Enter in the query box searches.
    page.focus("#query")
    for expected in ("mode", "k"):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == expected
    page.fill("#query", "artemisinin malaria treatment")
    page.press("#query", "Enter")
    first = page.locator("#hits li").first
    first.wait_for()
    assert first.locator(".hit-title").inner_text() == "Malaria"
    assert "malaria" in [m.lower() for m in first.locator("mark").all_inner_texts()]
    assert all(f"{name} #1" in first.locator(".meta").inner_text() for name in ("bm25", "splade", "dense"))
    page.screenshot(path=shots / "search.png")

    # An answer: text shows while the stream is still open (tokens), then the cited answer with its stats.
    page.fill("#question", "Which therapy cures falciparum malaria?")
    page.press("#question", "Enter")
    page.wait_for_function("""() => document.getElementById('answer').getAttribute('aria-busy') === 'true'
                                    && document.getElementById('answer-text').textContent.length > 0""", timeout=120_000)
    page.screenshot(path=shots / "streaming.png", full_page=True)
    page.wait_for_selector("#answer[aria-busy=false] #answer-stats dt", timeout=120_000)
    stats = page.inner_text("#answer-stats")
    assert "Compression" in stats and "none" in stats and "Context tokens" in stats and "Time to first token" in stats
    page.screenshot(path=shots / "answer.png", full_page=True)

    citation = page.locator("#answer a.citation, #citations a.citation").first
    passage_id = citation.get_attribute("href").rsplit("/", 1)[1]
    citation.click()
    page.wait_for_selector("#passage:not([hidden])")
    assert f"id {passage_id}" in page.inner_text("#passage-id") and page.inner_text("#passage-text")
    assert page.evaluate("document.activeElement.id") == "passage"
    page.screenshot(path=shots / "passage.png", full_page=True)

    # An API error is shown, not swallowed: the server's query limit is 200 characters.
    page.fill("#query", "long " * 60)
    page.press("#query", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "422" in page.inner_text("#error") and "server.max_query_chars" in page.inner_text("#error")
    page.close()
