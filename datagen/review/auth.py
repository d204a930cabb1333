"""Reviewer accounts and their sign-in tokens.

A token is 32 random bytes (URL-safe base64) shown once, when ``review add-reviewer`` creates
it; the database keeps only its SHA-256. A fast hash is enough here: the token is random and
long, so there is nothing to brute-force, and a lookup by hash costs one indexed query per
request. Adding a reviewer who exists already replaces their token (the old one stops working).
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass

from .db import Database

REVIEWER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass(frozen=True)
class Reviewer:
    name: str
    is_admin: bool = False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_reviewer(db: Database, name: str, *, admin: bool = False) -> str:
    """Create ``name`` (or give them a new token) and return the plain token, to be shown once."""
    if not REVIEWER_NAME.match(name or ""):
        raise ValueError(
            f"reviewer name {name!r} must be 1-64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )
    token = secrets.token_urlsafe(32)
    with db.write() as tx:
        tx.run(
            "INSERT INTO reviewers (name, token_hash, is_admin, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, is_admin = excluded.is_admin",
            (name, hash_token(token), int(admin), time.time()),
        )
        tx.run("INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, 'add-reviewer', ?)",
               (time.time(), "admin-cli", json.dumps({"reviewer": name, "admin": admin})))
    return token


def reviewer_for_token(db: Database, token: str | None) -> Reviewer | None:
    """The reviewer a token belongs to, or None for a missing, malformed or unknown token."""
    if not token or len(token) > 256:
        return None
    with db.read() as tx:
        row = tx.one("SELECT name, is_admin FROM reviewers WHERE token_hash = ?", (hash_token(token),))
    return Reviewer(row[0], bool(row[1])) if row else None


def list_reviewers(db: Database) -> list[Reviewer]:
    with db.read() as tx:
        rows = tx.all("SELECT name, is_admin FROM reviewers ORDER BY name")
    return [Reviewer(name, bool(admin)) for name, admin in rows]
