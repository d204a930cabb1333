"""Artifacts a synthesis run leaves in the Prefect UI, all under stable keys so they are listed
(and versioned) on the Artifacts page:

* ``{name}-progress``: progress artifact, updated as each batch finishes;
* ``{name}-counts``: table of counts by op, attribute, quality-check reason and quarantine reason;
* ``{name}-report``: markdown with the totals, where the shards / manifest / queue are, and the
  contact sheet (a PNG beside the shards, also embedded as a small data URI so the UI shows it).
"""
from __future__ import annotations

import base64
import io
import json
import re
import threading
from pathlib import Path
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact

from datagen.contact_sheet import write_contact_sheet

CONTACT_SHEET_SAMPLES = 12
INLINE_IMAGE_MAX_BYTES = 400_000  # above this the markdown links the PNG instead of embedding it


def artifact_key(name: str, suffix: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "run"
    return f"{slug}-{suffix}"


class Progress:
    """A progress artifact for ``total`` batches, ``done`` of them finished before this run."""

    def __init__(self, name: str, total: int, done: int = 0, artifact_id: str | None = None):
        self.name, self.total, self.done = name, max(total, 0), done
        self._lock = threading.Lock()
        # A child flow run (Dask) keeps updating its parent's artifact instead of starting another.
        self.artifact_id = UUID(str(artifact_id)) if artifact_id else create_progress_artifact(
            progress=self.percent(), key=artifact_key(name, "progress"),
            description=f"{name}: batches finished ({done} of {total} from earlier runs)",
        )

    def percent(self) -> float:
        return 100.0 if self.total == 0 else round(100.0 * self.done / self.total, 2)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            update_progress_artifact(artifact_id=self.artifact_id, progress=self.percent())


# The RunStats counter behind each report group ("quality check" and "skip reason" share one).
RUN_COUNTERS = {"op": "by_op", "attribute": "by_attribute", "category": "by_category", "scenario": "by_scenario",
                "quality check": "skipped", "skip reason": "skipped", "quarantine reason": "quarantined"}


def _groups(op=None, attribute=None, category=None, scenario=None, skipped=None, quarantined=None) -> dict:
    """Counts by report group; skip reasons ``quality:<check>`` form the quality-check group."""
    skipped = skipped or {}
    return {
        "op": op or {}, "attribute": attribute or {}, "category": category or {}, "scenario": scenario or {},
        "quality check": {k.removeprefix("quality:"): v for k, v in skipped.items() if k.startswith("quality:")},
        "skip reason": {k: v for k, v in skipped.items() if not k.startswith("quality:")},
        "quarantine reason": quarantined or {},
    }


def counts_table(stats: dict, manifest: dict | None = None) -> list[dict]:
    """Rows ``{"group", "name", "dataset", "this_run"}``.

    ``dataset`` comes from the manifest (every committed sample, whichever run wrote it: exact
    after resumes); ``this_run`` from ``stats``, the ``RunStats.to_dict()`` of the batches this
    run did (a resumed run shows only the rest of the work). A group the run does not count
    (``category``) has ``this_run`` None, not a made-up 0. Without a manifest (reasoning) only
    ``this_run``.
    """
    run = _groups(stats.get("by_op"), stats.get("by_attribute"), stats.get("by_category"), stats.get("by_scenario"),
                  stats.get("skipped"), stats.get("quarantined"))
    counted = {group for group, key in RUN_COUNTERS.items() if key in stats}
    data = {}
    if manifest:
        c = manifest.get("counts", {})
        data = _groups(c.get("op"), c.get("attribute"), c.get("category"), c.get("scenario"),
                       manifest.get("skipped"), manifest.get("quarantined"))
    rows = []
    for group in run:
        names = set(run[group]) | set(data.get(group, {}))
        for name in sorted(names, key=lambda n: (-data.get(group, {}).get(n, run[group].get(n, 0)), n)):
            row = {"group": group, "name": str(name)}
            if manifest:
                row["dataset"] = int(data[group].get(name, 0))
            row["this_run"] = int(run[group].get(name, 0)) if group in counted else None
            rows.append(row)
    return rows


def _totals(stats: dict) -> dict[str, int | float]:
    """The scalar figures of a ``RunStats.to_dict()``; times rounded to 0.1 s for reading."""
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in stats.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _inline_image(png: Path) -> str:
    """``data:`` URI of ``png`` as a JPEG, shrunk until it is small enough to embed."""
    from PIL import Image

    with Image.open(png) as im:
        im = im.convert("RGB")
        for width in (1600, 1000, 600):
            if im.width > width:
                im = im.resize((width, round(im.height * width / im.width)))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
            if buf.tell() <= INLINE_IMAGE_MAX_BYTES:
                break
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def report_markdown(summary: dict, sheet: Path | None, inline: str | None) -> str:
    stats = summary.get("stats", {})
    lines = [f"# {summary['name']} ({summary['scenario']})", ""]
    where = [("shards", summary.get("out")), ("manifest", summary.get("manifest")), ("review queue", summary.get("queue")),
             ("contact sheet", str(sheet) if sheet else None)]
    lines += [f"- **{label}**: `{value}`" for label, value in where if value]
    lines += ["", "| batches | run now | resumed | failed | seconds |", "|---|---|---|---|---|",
              f"| {summary['batches']} | {summary['batches_run']} | {summary['batches_resumed']} | "
              f"{summary['batches_failed']} | {summary['seconds']:.1f} |", ""]
    totals = _totals(stats)
    if totals:
        lines += ["| " + " | ".join(totals) + " |", "|" + "---|" * len(totals),
                  "| " + " | ".join(str(v) for v in totals.values()) + " |", ""]
    if summary.get("queue") and summary.get("scenario") == "reasoning" and not summary.get("manifest"):
        lines += ["Candidates wait for human review:", "",
                  f"    python -m datagen review serve --db {summary['queue']}",
                  "", "then run `publish-reviewed` to write the approved ones to shards.", ""]
    if inline:
        lines += [f"![contact sheet]({inline})", ""]
    return "\n".join(lines)


def publish_report(name: str, out: str, summary: dict, manifest: str | None) -> None:
    """Table and markdown artifacts for a finished (or partly failed) run. Reporting never fails
    the run: a broken contact sheet is logged and left out."""
    logger = get_run_logger()
    manifest_data = json.loads(Path(manifest).read_text()) if manifest else None
    rows = counts_table(summary.get("run_stats", summary.get("stats", {})), manifest_data)
    create_table_artifact(table=rows or [{"group": "-", "name": "nothing counted", "this_run": 0}],
                          key=artifact_key(name, "counts"),
                          description=f"{name}: counts by op, attribute, quality check and quarantine reason")
    sheet = inline = None
    if manifest:
        try:
            sheet = write_contact_sheet(manifest, Path(out) / f"{name}.contact-sheet.png",
                                        n=CONTACT_SHEET_SAMPLES)
            inline = _inline_image(sheet) if sheet else None
        except Exception as exc:  # noqa: BLE001 - a report must not fail a finished job
            logger.warning("no contact sheet: %s: %s", type(exc).__name__, exc)
    create_markdown_artifact(markdown=report_markdown(summary, sheet, inline), key=artifact_key(name, "report"),
                             description=f"{name}: where the data is, totals and a contact sheet")
