"""The quarantine log: one JSON line per record a run could not use, deduplicated by record id."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from datagen.schema import Quarantined


def read_quarantine_log(path: Path | str) -> list[dict]:
    """Entries of a quarantine log; a torn last line (writer killed mid-append) is ignored."""
    entries = []
    try:
        with open(path, "rb") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "id" in entry and "reason" in entry:
            entries.append(entry)
    return entries


class QuarantineLog:
    """Append-only JSONL log; a record id already in the file (from any earlier run) is not
    appended again, so reruns do not inflate the counts."""

    def __init__(self, path: Path | str, *, fsync: bool = True):
        self.path = Path(path)
        self._fsync = fsync
        self._appended = False
        self._ids = {entry["id"] for entry in read_quarantine_log(self.path)}
        self._fh = open(self.path, "ab")
        # A killed writer may have left half a line; start ours on a fresh one.
        if self._fh.tell() > 0 and not self._ends_with_newline():
            self._fh.write(b"\n")

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._ids

    def append(self, q: Quarantined) -> bool:
        """Log ``q``; return False (and write nothing) if its record id is already logged."""
        if not isinstance(q, Quarantined):
            raise TypeError(f"expected a Quarantined, got {type(q).__name__}")
        if q.id in self._ids:
            return False
        entry = dict(q.to_dict(), time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self._fh.write(json.dumps(entry, sort_keys=True, default=str).encode("utf-8") + b"\n")
        self._fh.flush()
        self._ids.add(q.id)
        self._appended = True
        return True

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            if self._fsync and self._appended:
                os.fsync(self._fh.fileno())
            self._fh.close()
