"""The review page driven in headless Chromium: sign in, a / x / backspace / space / m, progress."""
from __future__ import annotations

import os

import pytest

from datagen.review import open_store
from .candidates import photo_candidate

CHROMIUM = "/usr/bin/chromium"
HOSTILE = '<img src=x onerror="document.title=\'pwned\'"> Remove the <b>saucer</b> & cup'

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason="Debian chromium not installed (scripts/install_system_deps.sh)"),
]


@pytest.fixture
def browser():
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def progress(page) -> tuple[int, int, int]:
    return tuple(int(page.inner_text(f"#p-{k}")) for k in ("done", "left", "mine"))


def wait_for_item(page, previous: str | None) -> str:
    """Wait until the page shows an item other than ``previous`` and return its id."""
    page.wait_for_function("prev => { const c = document.getElementById('card');"
                           " return !c.hidden && c.dataset.itemId && c.dataset.itemId !== prev; }",
                           arg=previous or "")
    return page.get_attribute("#card", "data-item-id")


def test_review_in_the_browser(tmp_path, served, browser, artifacts_dir):
    db = str(tmp_path / "queue" / "queue.db")
    store = open_store(db)
    store.add_many([photo_candidate(i) for i in range(3)] + [photo_candidate(7, instruction=HOSTILE)])
    token = store.add_reviewer("ann")
    store.close()
    server = served(db)

    page = browser.new_page(viewport={"width": 1360, "height": 860})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    assert page.url.endswith("/login")                       # nothing shown before signing in
    page.fill("#token", "wrong-token")
    page.click("button[type=submit]")
    page.wait_for_selector("#login-error:not([hidden])")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-ready='1']")
    assert page.inner_text("#who") == "ann"
    first = wait_for_item(page, None)
    assert progress(page) == (0, 4, 0)
    assert page.inner_text("#instruction") == photo_candidate(0).instruction
    assert page.is_visible("#ol-src") and page.is_visible("#ol-tgt")    # outline on by default
    legend = page.inner_text(".legend")
    for label in ("Approve", "Reject", "Skip", "Undo", "Mask outline"):
        assert label in legend

    page.keyboard.press("m")                                 # mask outline off and on again
    assert not page.is_visible("#ol-tgt")
    page.keyboard.press("m")
    assert page.is_visible("#ol-tgt")

    page.keyboard.press("a")                                 # approve
    second = wait_for_item(page, first)
    page.wait_for_function("() => document.getElementById('p-mine').textContent === '1'")
    assert progress(page) == (1, 3, 1)

    page.keyboard.press("x")                                 # reject
    third = wait_for_item(page, second)
    page.wait_for_function("() => document.getElementById('p-mine').textContent === '2'")
    assert progress(page) == (2, 2, 2)
    assert page.inner_text("#history li:first-child .mark") == "✗"

    page.keyboard.press("Backspace")                         # undo the reject: that item comes back
    assert wait_for_item(page, third) == second
    page.wait_for_function("() => document.getElementById('p-mine').textContent === '1'")
    assert progress(page) == (1, 3, 1)
    assert "undone" in page.get_attribute("#history li:first-child", "class")

    page.keyboard.press("a")                                 # decide it again
    assert wait_for_item(page, second) == third
    page.wait_for_function("() => document.getElementById('p-mine').textContent === '2'")
    page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    page.wait_for_timeout(300)                               # the progress bar's 0.25 s transition
    page.screenshot(path=str(artifacts_dir / "review-ui.png"))
    page.keyboard.press(" ")                                 # skip
    fourth = wait_for_item(page, third)
    # The hostile instruction is shown as text: no element injected, no script run.
    assert page.inner_text("#instruction") == HOSTILE
    assert page.locator("#instruction img, #instruction b").count() == 0
    page.wait_for_function("() => document.getElementById('p-mine').textContent === '2'")
    assert progress(page) == (2, 2, 2)

    page.keyboard.press("a")
    page.wait_for_selector("#empty:not([hidden])")
    assert "1 skipped item" in page.inner_text("#revisit")
    page.click("#revisit")
    assert wait_for_item(page, fourth) == third

    page.goto(server.url + "/stats")
    page.wait_for_function("() => document.querySelectorAll('#reviewers tr').length === 1")
    assert "ann" in page.inner_text("#reviewers")
    page.screenshot(path=str(artifacts_dir / "review-stats.png"), full_page=True)
    assert page.title() != "pwned" and not errors
