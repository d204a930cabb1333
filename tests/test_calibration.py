"""Calibrated routing: the rule's pieces against hand-computed answers, then the whole loop on a
real SQLite queue: reviewed history -> ``datagen calibrate`` -> new candidates routed -> people
review the band and the audit -> the stats page reports the rule's audited precision."""
from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from datagen.calibration import Example, Rule, fit_logistic, fit_rule, pick_thresholds
from datagen.calibration_history import demo_candidates
from datagen.reasoning.queue import enqueue, open_queue
from datagen.review.routing import RULE_ACTOR_PREFIX, decided_examples, load_rule, routing_stats
from datagen.review.stats import queue_stats


def test_logistic_fit_orders_by_the_informative_feature():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(float)
    w, b = fit_logistic(x, y, l2=1.0)
    assert w[0] > 3 * abs(w[1]) and w[0] > 1 and abs(b) < 0.5


def test_thresholds_meet_the_precision_targets_exactly():
    p = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    good = np.array([1, 1, 1, 1, 0, 1, 0, 0, 1, 0], bool)
    # Top 4 are all good (precision 1.0); the top 6 hold one bad (5/6 = 0.83).
    approve, reject = pick_thresholds(p, good, 0.95, 0.6, min_support=2)
    assert approve == 0.8
    # Ascending, the six lowest hold 4 bad (0.67 >= 0.6); seven hold 4 of 7 (0.57).
    assert reject == 0.7
    # At 0.7 the four lowest qualify (3 bad of 4) but not the five lowest (3 of 5).
    assert pick_thresholds(p, good, 0.95, 0.7, min_support=2) == (0.8, 0.4)
    assert pick_thresholds(p, good, 0.95, 0.6, min_support=5) == (None, 0.7)


def test_rule_round_trips_and_its_version_follows_its_content():
    rng = np.random.default_rng(1)
    examples = [Example(f"k{i}", "reasoning/remove", {"a": float(v), "b": float(rng.normal())}, bool(v > 0))
                for i, v in enumerate(rng.normal(size=200))]
    rule = fit_rule(examples, min_decisions=20)
    again = Rule.from_dict(json.loads(json.dumps(rule.to_dict())))
    assert again.version == rule.version
    scores = {"a": 0.7, "b": 0.1}
    assert again.route("reasoning/remove", scores) == rule.route("reasoning/remove", scores)
    assert rule.route("reasoning/recolor", scores) == ("review", None), "no rule for an unseen group"
    stricter = fit_rule(examples, min_decisions=20, approve_precision=0.99)
    assert stricter.version != rule.version


def _review_all(store, truth: dict, reviewer: str = "ann") -> int:
    """A reviewer who always knows the truth decides everything pending."""
    n = 0
    while (item := store.claim(reviewer)) is not None:
        store.decide(item["id"], reviewer, "approve" if truth[item["key"]] else "reject")
        n += 1
    return n


@pytest.fixture(scope="module")
def histories():
    return demo_candidates(6, 0), demo_candidates(3, 1)


def _stats_page_text(url: str, token: str, screenshot) -> tuple[str, list[str]]:
    """Sign in with Chromium, open the stats page, return the routing paragraph and audit rows."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.goto(url + "/login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-ready='1']")
        page.goto(url + "/stats")
        page.wait_for_selector("#routing-table:not([hidden])")
        text = page.inner_text("#routing")
        rows = [r.inner_text() for r in page.query_selector_all("#routing-audit tr")]
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return text, rows


def test_calibrate_and_route_end_to_end(tmp_path, histories, capsys, artifacts_dir):
    from datagen.cli import main
    from datagen.review.testing import ReviewServer

    past, fresh = histories
    truth = {s.key: good for s, good in past + fresh}
    queue = tmp_path / "queue"
    store = open_queue(queue)
    store.add_reviewer("ann")
    token = store.add_reviewer("boss", admin=True)
    enqueue([s for s, _ in past], store)
    assert _review_all(store, truth) == len(past)
    assert len(decided_examples(store)) == len(past)

    code = main(["calibrate", "--db", str(queue), "--min-decisions", "10", "--audit-rate", "0.3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rule = load_rule(store)
    assert rule is not None and rule.groups and json.loads(captured.out)["version"] == rule.version
    assert "auto-approve precision" in captured.err

    stats = enqueue([s for s, _ in fresh], store)
    assert stats.added == len(fresh)
    actor = RULE_ACTOR_PREFIX + rule.version
    with store.db.read() as tx:
        routed = tx.all("SELECT i.key, i.status, r.route, r.predicted FROM routing r JOIN items i ON i.id = r.item_id")
        rule_decisions = dict(tx.all("SELECT i.key, d.verdict FROM decisions d JOIN items i ON i.id = d.item_id "
                                     "WHERE d.reviewer = ?", (actor,)))
    assert len(routed) == len(fresh)
    routes = {route for _k, _s, route, _p in routed}
    assert "auto" in routes and "audit" in routes
    for key, status, route, predicted in routed:
        if route == "auto":
            assert rule_decisions[key] == predicted and status == ("approved" if predicted == "approve" else "rejected")
        else:
            assert status == "pending" and key not in rule_decisions
    # People review the uncertain band and the audit sample; the rule's calls are measured.
    _review_all(store, truth)
    audited = [(k, p) for k, _s, route, p in routed if route == "audit"]
    report = routing_stats(store)
    for call in ("approve", "reject"):
        mine = [truth[k] == (call == "approve") for k, p in audited if p == call]
        assert report["audit"][call]["decided"] == len(mine)
        if mine:
            assert report["audit"][call]["precision"] == pytest.approx(sum(mine) / len(mine), abs=1e-4)
    # Decisions made by the rule never become training labels.
    assert len(decided_examples(store)) == len(past) + sum(1 for *_x, route, _p in routed if route != "auto")

    assert queue_stats(store)["routing"]["version"] == rule.version
    store.close()
    # Rule-approved candidates are published like any other, their review naming the rule.
    from datagen.shards.reader import read_samples

    assert main(["publish-reviewed", "--db", str(queue / "queue.db"), "--out", str(tmp_path / "pub"), "--name", "pub",
                 "--manifests", str(tmp_path / "m")]) == 0
    published = {s.key: s.review for s in read_samples(tmp_path / "m" / "pub.json")}
    approved_by_rule = [k for k, v in rule_decisions.items() if v == "approve"]
    assert approved_by_rule and all(published[k]["reviewers"] == [actor] for k in approved_by_rule)
    with ReviewServer(str(queue / "queue.db"), log_path=tmp_path / "server.log").start() as server:
        page = httpx.get(server.url + "/api/stats", headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200
        assert page.json()["routing"]["audit"] == json.loads(json.dumps(report["audit"]))
        text, rows = _stats_page_text(server.url, token, artifacts_dir / "stats_routing.png")
    assert rule.version in text and "audit" in text
    approve = report["audit"]["approve"]
    assert rows[0].split("\t")[:3] == ["approve", str(approve["decided"]), str(approve["agreed"])]


def test_calibrate_with_too_few_decisions_stores_nothing(tmp_path, capsys):
    from datagen.cli import main

    store = open_queue(tmp_path / "q")
    store.close()
    assert main(["calibrate", "--db", str(tmp_path / "q")]) == 1
    assert "nothing stored" in capsys.readouterr().err
    assert main(["calibrate", "--db", str(tmp_path / "q"), "--audit-rate", "2"]) == 2
