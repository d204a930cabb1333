"""``datagen review add-reviewer | export | stats`` and ``datagen publish-reviewed`` through main(argv).
(``review serve`` runs in every server test: ``ReviewServer`` starts it as a subprocess.)"""
from __future__ import annotations

import json

import pytest

from datagen.cli import main
from datagen.review import QueueMissing, open_store
from .candidates import tiny_candidate


def test_review_commands_end_to_end(tmp_path, capsys):
    db = str(tmp_path / "queue" / "queue.db")
    store = open_store(db)
    store.add_many([tiny_candidate(i) for i in range(5)])

    assert main(["review", "add-reviewer", "ann", "--db", db]) == 0
    token = capsys.readouterr().out.strip()
    assert store.authenticate(token).name == "ann"
    assert main(["review", "add-reviewer", "boss", "--admin", "--db", f"sqlite:///{db}"]) == 0
    assert store.authenticate(capsys.readouterr().out.strip()).is_admin
    assert main(["review", "add-reviewer", "bad name", "--db", db]) == 2

    for verdict in ("approve", "reject", "approve"):
        store.decide(store.claim("ann")["id"], "ann", verdict)
    out = tmp_path / "decisions.jsonl"
    assert main(["review", "export", "--db", db, "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and [r["status"] for r in rows].count("approved") == 2
    assert rows[1]["decisions"] == [{"reviewer": "ann", "verdict": "reject", "at": rows[1]["decisions"][0]["at"],
                                     "reason": None, "note": None, "struck": []}]
    assert main(["review", "export", "--db", db, "--status", "approved"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["review", "export", "--db", db, "--audit"]) == 0
    actions = [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()]
    assert actions == ["add-reviewer", "add-reviewer", "approve", "reject", "approve"]

    assert main(["review", "stats", "--db", db]) == 0
    text = capsys.readouterr().out
    assert "items 5: pending 2, approved 2, rejected 1" in text and "ann" in text

    args = ["publish-reviewed", "--db", db, "--out", str(tmp_path / "data"), "--name", "reviewed",
            "--manifests", str(tmp_path / "manifests")]
    assert main(args) == 0
    assert "published 2 newly approved" in capsys.readouterr().out
    assert (tmp_path / "manifests" / "reviewed.json").exists()
    assert main(args) == 0
    assert "published 0 newly approved" in capsys.readouterr().out
    store.close()


def test_a_mistyped_queue_path_is_an_error_not_a_new_queue(tmp_path, capsys):
    missing = tmp_path / "nope" / "queue.db"
    commands = [["review", "serve", "--db", str(missing)], ["review", "add-reviewer", "ann", "--db", str(missing)],
                ["review", "export", "--db", f"sqlite:///{missing}"], ["review", "stats", "--db", str(missing)],
                ["publish-reviewed", "--db", str(missing), "--out", str(tmp_path / "data"), "--name", "r",
                 "--manifests", str(tmp_path / "manifests")]]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --db: no review queue at") and str(missing) in err and "\n" not in err
    assert not missing.parent.exists() and not (tmp_path / "data").exists()


@pytest.mark.postgres
def test_a_postgres_database_without_a_queue_is_an_error(postgres_url, capsys):
    with pytest.raises(QueueMissing) as err:
        open_store(postgres_url, create=False)
    assert "no review queue in that PostgreSQL database" in err.value.detail
    assert main(["review", "stats", "--db", postgres_url]) == 2
    assert capsys.readouterr().err.startswith("error: --db: no review queue in that PostgreSQL database")
    open_store(postgres_url).close()                                    # a filling command creates it
    open_store(postgres_url, create=False).close()
