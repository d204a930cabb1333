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

    page.keyboard.press("x")                                 # reject (x again: no reason given)
    page.wait_for_selector("#reasons:not([hidden])")
    page.keyboard.press("x")
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
    # The count arrives with /api/progress, just after the empty panel shows.
    page.wait_for_function("() => document.getElementById('revisit').textContent.includes('1 skipped item')")
    page.click("#revisit")
    assert wait_for_item(page, fourth) == third

    page.goto(server.url + "/stats")
    page.wait_for_function("() => document.querySelectorAll('#reviewers tr').length === 1")
    assert "ann" in page.inner_text("#reviewers")
    page.screenshot(path=str(artifacts_dir / "review-stats.png"), full_page=True)
    assert page.title() != "pwned" and not errors


def serve_queue(tmp_path, served, n: int) -> tuple[str, str, object]:
    """A queue of ``n`` coffee candidates and reviewer ann, served: (db, ann's token, server)."""
    db = str(tmp_path / "queue" / "queue.db")
    store = open_store(db)
    store.add_many([photo_candidate(i) for i in range(n)])
    token = store.add_reviewer("ann")
    store.close()
    return db, token, served(db)


def signed_in_page(browser, server, token: str, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-ready='1']")
    return page, errors


def in_view(page, selector: str) -> bool:
    """The element's whole box is inside the viewport without scrolling."""
    return page.evaluate("s => { const r = document.querySelector(s).getBoundingClientRect();"
                         " return r.top >= 0 && r.bottom <= innerHeight && r.height > 50; }", selector)


def test_paraphrases_reasons_mask_fill_history_and_800px(tmp_path, served, browser, artifacts_dir):
    from datagen.review.publish import publish_reviewed
    from datagen.shards import read_samples
    from .candidates import PARAPHRASES

    db, token, server = serve_queue(tmp_path, served, 4)
    page, errors = signed_in_page(browser, server, token, 800, 600)
    first = wait_for_item(page, None)
    page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    # 800 px: both images and the decision keys fit above the fold; Space skips and never scrolls.
    page.screenshot(path=str(artifacts_dir / "review-ui-800-first.png"))
    assert in_view(page, "#img-tgt") and in_view(page, "#img-src") and in_view(page, ".legend")
    assert page.inner_text("#paraphrases").split("\n")[1::2] == PARAPHRASES or \
        [li.inner_text().split("\n")[-1] for li in page.query_selector_all("#paraphrases li")] == PARAPHRASES
    page.keyboard.press("f")                                          # filled mask on
    page.wait_for_function("() => document.getElementById('fill-tgt').dataset.mask")
    assert page.is_visible("#fill-tgt")
    tinted = page.evaluate("() => { const c = document.getElementById('fill-tgt');"
                           " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                           " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n / (c.width * c.height); }")
    assert 0.05 < tinted < 0.6                                        # the saucer, not the whole frame
    page.screenshot(path=str(artifacts_dir / "review-ui-800.png"))
    page.keyboard.press("f")
    assert not page.is_visible("#fill-tgt")

    page.keyboard.press("2")                                          # strike the second paraphrase...
    page.click("#paraphrases li[data-index='2']")                     # ...and the third, by click
    page.click("#paraphrases li[data-index='2']")                     # no: keep the third after all
    assert page.get_attribute("#paraphrases li[data-index='1']", "class") == "struck"
    page.keyboard.press("a")
    second = wait_for_item(page, first)

    page.keyboard.press("x")                                          # reject: pick a reason
    page.wait_for_selector("#reasons:not([hidden])")
    assert page.inner_text("#reason-buttons").split() == ["1", "wrong", "object", "2", "artifact", "3",
                                                          "instruction", "wrong", "4", "other"]
    page.fill("#note", "smear left of the cup")
    page.evaluate("() => document.activeElement.blur()")
    page.keyboard.press("2")                                          # artifact
    third = wait_for_item(page, second)
    page.wait_for_function("() => document.querySelectorAll('#history li').length === 2")
    assert "artifact" in page.inner_text("#history li:first-child .reason")

    assert page.evaluate("() => scrollY") == 0
    page.keyboard.press(" ")                                          # skip
    wait_for_item(page, third)
    assert page.evaluate("() => scrollY") == 0

    page.wait_for_selector("body[data-busy='0']")
    page.click("#history li:nth-child(2)")                           # reopen the approval of `first`
    page.wait_for_function(f"() => document.getElementById('card').dataset.itemId === '{first}'")
    page.keyboard.press("a")                                          # approve again, nothing struck
    page.wait_for_function(f"() => document.getElementById('card').dataset.itemId !== '{first}'")

    wide, wide_errors = signed_in_page(browser, server, token, 1400, 900)
    wait_for_item(wide, None)
    wide.keyboard.press("2")
    wide.keyboard.press("f")
    wide.wait_for_function("() => document.getElementById('fill-tgt').dataset.mask")
    wide.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    wide.keyboard.press("x")
    wide.screenshot(path=str(artifacts_dir / "review-ui-1400.png"))
    assert in_view(wide, "#img-tgt") and not errors and not wide_errors

    store = open_store(db, create=False)
    rows = {r["item_id"]: r for r in store.export_rows()}
    assert rows[int(second)]["decisions"][0]["reason"] == "artifact"
    assert rows[int(second)]["decisions"][0]["note"] == "smear left of the cup"
    assert rows[int(first)]["decisions"][0]["struck"] == []           # the reopened one was re-decided
    store.undo("ann", None)                                           # and back to the struck approval:
    item = store.claim("ann")
    store.decide(item["id"], "ann", "approve", struck=[1])
    result = publish_reviewed(store, tmp_path / "data", "r", tmp_path / "manifests")
    store.close()
    [sample] = list(read_samples(result.manifest))
    assert sample.paraphrases == [PARAPHRASES[0], PARAPHRASES[2]]
    assert sample.review["struck_paraphrases"] == [PARAPHRASES[1]]
    assert sample.review["decisions"][0]["struck"] == [1]


ATTACKER_PAGE = """<!doctype html><html><body>
<form id="f" method="POST" action="{target}/api/items/{item}/approve"><input name="a" value="1"></form>
<script>
(async () => {{
  const target = "{target}/api/items/{item}/approve";
  const tries = [
    fetch(target, {{method: "POST", mode: "no-cors", credentials: "include"}}),
    fetch(target, {{method: "POST", mode: "no-cors", credentials: "include", body: "{{}}",
                    headers: {{"Content-Type": "text/plain"}}}}),
    fetch("{target}/api/undo", {{method: "POST", mode: "no-cors", credentials: "include", body: "{{}}"}}),
  ];
  await Promise.allSettled(tries);
  document.title = "fetched";
  document.getElementById("f").submit();
}})();
</script></body></html>"""


def test_csrf_vectors_from_another_loopback_port_land_nowhere(tmp_path, served, browser):
    """A page on another port of the same host (same site, other origin) tries a form post, a
    no-cors fetch and a text/plain body as the signed-in reviewer: nothing changes."""
    import http.server
    import threading

    db, token, server = serve_queue(tmp_path, served, 2)
    page, _ = signed_in_page(browser, server, token, 1000, 700)
    item = wait_for_item(page, None)                                  # leased to ann: only CSRF stops it
    html = ATTACKER_PAGE.format(target=server.url, item=item).encode()

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args):
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        attack = page.context.new_page()
        attack.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        attack.wait_for_url(server.url + "/**", timeout=15_000)       # the form post went through...
        body = attack.inner_text("body")
        assert "403" in body or "refused" in body or "cross-site" in body, body
    finally:
        evil.shutdown()
    store = open_store(db, create=False)
    rows = list(store.export_rows())
    store.close()
    assert all(r["status"] == "pending" and not r["decisions"] for r in rows)   # ...and changed nothing


def test_an_admin_resolves_a_conflict_on_the_stats_page(tmp_path, served, browser):
    """The stats page's resolve buttons send the CSRF token and a JSON body like the review page."""
    db = str(tmp_path / "queue" / "queue.db")
    store = open_store(db, reviews_per_item=2)
    store.add_many([photo_candidate(0)])
    boss = store.add_reviewer("boss", admin=True)
    for name, verdict in (("ann", "approve"), ("bob", "reject")):
        store.decide(store.claim(name)["id"], name, verdict)
    store.close()
    page, errors = signed_in_page(browser, served(db), boss, 1200, 800)
    page.click("a[href='/stats']")
    page.wait_for_selector("#conflicted tr button")
    page.click("#conflicted tr button:text('Approve')")
    page.wait_for_selector("#no-conflicts:not([hidden])")
    store = open_store(db, create=False)
    [row] = list(store.export_rows())
    store.close()
    assert (row["status"], row["resolved_by"]) == ("approved", "boss") and not errors
