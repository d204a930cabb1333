"""Bad-input table: every kind of broken input we know of, run through the real CLI jobs.

    .venv/bin/python bench/bad_input.py [--keep DIR]

Builds a corpus in a temporary folder and prints, per group, how many cases were tried, how many
were explained (a record or annotation quarantined with the expected reason in the quarantine
log; a malformed catalog or a bad argument answered with exit status 2 and one sentence naming the
field or flag, without a traceback), how many crashed (a traceback or an unexpected exit status),
hung (ran past the time limit) and how many samples of the good records beside them were lost.
Targets: explained 100 %, crashed 0, hung 0, lost 0. ``tests/test_bad_input.py`` runs the same
corpus and asserts those targets.

Groups:
* ``records``: image entries that cannot be used (undecodable, truncated, decompression-bomb
  header, FIFO, ``/dev/zero``, ``..`` path, symlink out of the folder, duplicate id, missing file,
  float TIFF, oversize file, entry not an object, instances not a list, no file name) in a folder
  catalog, and (COCO) a malformed image entry, a duplicate image id, a size mismatch;
* ``annotations``: instances dropped from records that are kept (bad attribute values, box outside
  the image, unknown category, degenerate polygon, broken RLE, mask files that are bombs, FIFOs or
  outside the folder; COCO crowd regions);
* ``catalog``: COCO entries that belong to no record (orphan annotation, annotation not an object,
  unusable category);
* ``malformed catalogs``: files that cannot be a catalog (truncated JSON, wrong top-level types,
  deep nesting, Latin-1, empty file);
* ``bad arguments``: command-line values that cannot work.

The two data runs are subprocesses with a time limit (a FIFO opened for reading would block the
run for ever); the other cases call ``datagen.cli.main`` in-process, catching everything.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT_S = 120
H, W = 64, 96


@dataclass
class Row:
    group: str
    tried: int = 0
    explained: int = 0
    crashed: int = 0
    hung: int = 0
    lost: int = 0
    failures: list = field(default_factory=list)


# ----- corpus -----

def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` and that holds no pixel data (a bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _photo(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((H, W, 3), 90, np.uint8) + rng.integers(0, 30, (H, W, 3), dtype=np.uint8)
    image[20:44, 8:30] = (200, 60, 40)   # left object
    image[20:44, 62:84] = (40, 70, 200)  # right object
    return image


def _cat(x0: int, x1: int, **extra) -> dict:
    return {"category": "cat", "polygon": [[x0, 20], [x1, 20], [x1, 44], [x0, 44]], **extra}


GOOD_CATS = [_cat(8, 30), _cat(62, 84)]


def _dog(**extra) -> dict:
    return {"category": "dog", "polygon": [[40, 2], [50, 2], [50, 12], [40, 12]], **extra}


def _folder_corpus(folder: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """Write a folder catalog; return ``(expected (id, reason) pairs, good record ids)``."""
    folder.mkdir(parents=True)
    outside = folder.parent / "outside.png"
    Image.fromarray(_photo(9)).save(outside)
    Image.fromarray(_photo(1)).save(folder / "good.png")
    Image.fromarray(_photo(2)).save(folder / "good2.png")
    (folder / "garbage.png").write_bytes(b"\x89PNG not really an image")
    jpeg = io.BytesIO()
    Image.fromarray(_photo(3)).save(jpeg, "JPEG")
    (folder / "cut.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    os.mkfifo(folder / "fifo.png")
    (folder / "link.png").symlink_to(outside)
    tiff = io.BytesIO()
    Image.fromarray(np.zeros((H, W), np.float32), "F").save(tiff, "TIFF")
    (folder / "float.tif").write_bytes(tiff.getvalue())
    with open(folder / "huge.png", "wb") as fh:  # sparse: takes no disk, but 300 MB long
        fh.truncate(300 * 1024 * 1024)
    (folder / "masks").mkdir()
    (folder / "masks" / "bomb.png").write_bytes(_png_header_only(60_000, 60_000))
    os.mkfifo(folder / "masks" / "fifo.png")
    entries = [
        {"id": "good", "file": "good.png", "instances": GOOD_CATS},
        # Broken dog annotations beside two good cats: the dogs are dropped (and, being still in the
        # picture, make dog expressions unsafe), the cats still give samples.
        {"id": "good2", "file": "good2.png", "instances": GOOD_CATS + [
            _dog(id="a1", attributes={"color": {"x": 1}}),
            _dog(id="a2", in_mirror="yes"),
            _dog(id="a3", color=123),
            {"id": "a4", "category": "dog", "box": [-50, 0, 500, 10]},
            {"id": "a5", "category": "dragon", "box": [1, 1, 9, 9]},
            {"id": "a6", "category": "dog", "polygon": [[1, 1], [5, 5]]},
            {"id": "a7", "category": "dog", "segmentation": {"size": [H, W], "counts": [5, 7]}},
            {"id": "a8", "category": "dog", "mask": "masks/bomb.png"},
            {"id": "a9", "category": "dog", "mask": "../outside.png"},
            {"id": "a10", "category": "dog", "mask": "masks/fifo.png"},
        ]},
        {"id": "undecodable", "file": "garbage.png", "instances": GOOD_CATS},
        {"id": "truncated", "file": "cut.jpg", "instances": GOOD_CATS},
        {"id": "bomb", "file": "bomb.png", "instances": GOOD_CATS},
        {"id": "fifo", "file": "fifo.png", "instances": GOOD_CATS},
        {"id": "devzero", "file": "/dev/zero", "instances": GOOD_CATS},
        {"id": "dotdot", "file": "../outside.png", "instances": GOOD_CATS},
        {"id": "symlink", "file": "link.png", "instances": GOOD_CATS},
        {"id": "good", "file": "good2.png", "instances": GOOD_CATS},  # duplicate id
        {"id": "missing", "file": "nope.png", "instances": GOOD_CATS},
        {"id": "float", "file": "float.tif", "instances": GOOD_CATS},
        {"id": "huge", "file": "huge.png", "instances": GOOD_CATS},
        5,
        {"id": "instlist", "file": "good.png", "instances": "x"},
        {"id": "nofile", "instances": GOOD_CATS},
    ]
    (folder / "annotations.json").write_text(json.dumps({"categories": ["cat", "dog"], "images": entries}))
    rid = f"folder:{folder.name}:"
    records = [("undecodable", "undecodable"), ("truncated", "truncated"), ("bomb", "oversized"),
               ("fifo", "not_a_file"), ("devzero", "outside_root"), ("dotdot", "outside_root"),
               ("symlink", "outside_root"), ("good@9", "duplicate_id"), ("missing", "missing"),
               ("float", "bad_mode"), ("huge", "too_large"), ("entry13", "bad_annotation"),
               ("instlist", "bad_annotation"), ("nofile", "bad_record")]
    annotations = [(f"good2#a{i}", reason) for i, reason in enumerate(
        ["bad_attribute", "bad_attribute", "bad_attribute", "bad_box", "unknown_category", "empty_polygon",
         "bad_mask", "bad_mask", "bad_mask", "bad_mask"], start=1)]
    expected = [("records", rid + i, r) for i, r in records] + [("annotations", rid + i, r) for i, r in annotations]
    return expected, [rid + "good", rid + "good2"]


def _coco_corpus(folder: Path) -> tuple[list, list[str]]:
    folder.mkdir(parents=True)
    Image.fromarray(_photo(4)).save(folder / "a.png")
    Image.fromarray(_photo(5)).save(folder / "b.png")

    def image(i, name, h=H, w=W):
        return {"id": i, "file_name": name, "height": h, "width": w}

    def box_ann(aid, image_id, x0, **extra):
        return {"id": aid, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "segmentation": [[x0, 20, x0 + 22, 20, x0 + 22, 44, x0, 44]], "bbox": [x0, 20, 22, 24], **extra}

    doc = {
        "images": [image(1, "a.png"), "not an image", image(1, "b.png"), image(3, "b.png", h=10)],
        "annotations": [box_ann(1, 1, 8), box_ann(2, 1, 62), box_ann(3, 1, 40, iscrowd=1, category_id=2),
                        box_ann(4, 777, 8), [1, 2, 3]],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "person"}, {"name": "no id"}],
    }
    (folder / "instances_bad.json").write_text(json.dumps(doc))
    p = "coco:bad:"
    expected = [("records", p + "images[1]", "bad_record"), ("records", p + "1@2", "duplicate_id"),
                ("records", p + "3", "size_mismatch"), ("annotations", p + "1#3", "crowd"),
                ("catalog", p + "annotations[3]", "orphan_annotation"),
                ("catalog", p + "annotations[4]", "bad_annotation"), ("catalog", p + "categories[2]", "bad_category")]
    return expected, [p + "1"]


def _malformed_catalogs(folder: Path) -> list[tuple[str, Path]]:
    folder.mkdir(parents=True)
    cases = {
        "truncated JSON": b'{"images": [{"id": 1, "file_name": "a.png"',
        "categories as a dict": json.dumps({"images": [], "annotations": [], "categories": {"1": "cat"}}).encode(),
        "annotations: 5": json.dumps({"images": [], "annotations": 5, "categories": []}).encode(),
        "images as a string": json.dumps({"images": "x", "annotations": [], "categories": []}).encode(),
        "deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "Latin-1 text": '{"images": [{"file": "café.png"}]}'.encode("latin-1"),
        "empty file": b"",
        "a bare string": b'"just a string"',
        "folder categories as a dict": json.dumps({"images": [], "categories": {"a": 1}}).encode(),
    }
    out = []
    for i, (name, data) in enumerate(cases.items()):
        path = folder / f"catalog{i}.json"
        path.write_bytes(data)
        out.append((name, path))
    return out


def _bad_arguments(tmp: Path, source: str) -> list[tuple[str, list[str], str]]:
    """``(case, argv, word the error must name)``."""
    base = ["perception", "--source", source, "--out", str(tmp / "args-out"), "--no-progress"]
    return [
        ("--batch-size 0", base + ["--batch-size", "0"], "--batch-size"),
        ("--maxcount 0", base + ["--maxcount", "0"], "--maxcount"),
        ("--maxcount -1", base + ["--maxcount", "-1"], "--maxcount"),
        ("--name ../../evil", base + ["--name", "../../evil"], "--name"),
        ("unwritable --manifests", base + ["--manifests", "/proc/datagen-nope"], "--manifests"),
        ("unwritable --out", ["perception", "--source", source, "--out", "/proc/datagen-nope"], "--out"),
        ("--opacity 5", base + ["--opacity", "5"], "--opacity"),
        ("--limit -3", base + ["--limit", "-3"], "--limit"),
        ("no --source", ["perception", "--out", str(tmp / "args-out")], "--source"),
        ("--source nowhere.txt", ["perception", "--source", "nowhere.txt", "--out", str(tmp / "x")], "nowhere.txt"),
        ("understanding --dilate -1", ["understanding", "--source", source, "--out", str(tmp / "u"), "--dilate", "-1"],
         "--dilate"),
        ("reasoning --candidates 0", ["reasoning", "--source", source, "--queue", str(tmp / "q"), "--candidates", "0"],
         "--candidates"),
    ]


# ----- running -----

def _run_job(source: Path, out: Path) -> tuple[str, subprocess.CompletedProcess | None]:
    cmd = [sys.executable, "-m", "datagen", "perception", "--source", str(source), "--out", str(out),
           "--name", "bad", "--no-progress", "--batch-size", "4"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIME_LIMIT_S, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        return "hung", None
    crashed = "Traceback" in proc.stderr or proc.returncode not in (0, 1)
    return ("crashed" if crashed else "ok"), proc


def _logged(out: Path) -> dict[str, str]:
    from datagen.shards.quarantine import read_quarantine_log

    found = {}
    for log in out.glob("*.quarantine.jsonl"):
        for entry in read_quarantine_log(log):
            found.setdefault(entry["id"], entry["reason"])
    return found


def _records_with_samples(out: Path) -> set[str]:
    from datagen.shards.layout import committed_shards

    return {(row.get("provenance") or {}).get("record") for shard in committed_shards(out)
            for row in shard.load_sidecar()["samples"]}


def _score_data_run(rows: dict[str, Row], expected: list, good: list[str], source: Path, out: Path) -> None:
    status, proc = _run_job(source, out)
    logged = _logged(out) if status != "hung" else {}
    with_samples = _records_with_samples(out) if status != "hung" else set()
    for group, rid, reason in expected:
        row = rows[group]
        row.tried += 1
        if status == "hung":
            row.hung += 1
        elif status == "crashed":
            row.crashed += 1
            row.failures.append((rid, proc.stderr[-400:]))
        elif logged.get(rid) == reason:
            row.explained += 1
        else:
            row.failures.append((rid, f"expected {reason}, logged {logged.get(rid)!r}"))
    lost = [g for g in good if g not in with_samples]
    rows["records"].lost += len(lost)
    rows["records"].failures += [(g, "good record lost") for g in lost]


def _call_cli(argv: list[str]) -> tuple[int | str, str]:
    from datagen.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:  # noqa: BLE001 - counting crashes is the point
            import traceback

            return "crashed", "".join(traceback.format_exception(exc))
    return code, err.getvalue()


def _score_usage(row: Row, name: str, argv: list[str], must_name: str) -> None:
    row.tried += 1
    code, err = _call_cli(argv)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if code == "crashed" or "Traceback" in err:
        row.crashed += 1
        row.failures.append((name, err[-400:]))
    elif code == 2 and must_name in lines[-1] if lines else False:
        row.explained += 1
    else:
        row.failures.append((name, f"exit {code}: {err.strip()[-300:]}"))


def run_corpus(tmp: Path) -> list[Row]:
    """Build the corpus under ``tmp`` and score every case; rows in table order."""
    rows = {g: Row(g) for g in ("records", "annotations", "catalog", "malformed catalogs", "bad arguments")}
    expected, good = _folder_corpus(tmp / "folder")
    _score_data_run(rows, expected, good, tmp / "folder", tmp / "out-folder")
    expected, good = _coco_corpus(tmp / "coco")
    _score_data_run(rows, expected, good, tmp / "coco" / "instances_bad.json", tmp / "out-coco")
    for name, path in _malformed_catalogs(tmp / "malformed"):
        _score_usage(rows["malformed catalogs"], name,
                     ["perception", "--source", str(path), "--out", str(tmp / "m-out"), "--no-progress"], path.name)
    for name, argv, must_name in _bad_arguments(tmp, str(tmp / "folder")):
        _score_usage(rows["bad arguments"], name, argv, must_name)
    return list(rows.values())


def format_table(rows: list[Row]) -> str:
    lines = [f"{'group':<20}{'tried':>7}{'explained':>11}{'crashed':>9}{'hung':>6}{'lost':>6}"]
    for r in rows + [Row("total", *(sum(getattr(r, f) for r in rows) for f in
                                    ("tried", "explained", "crashed", "hung", "lost")))]:
        lines.append(f"{r.group:<20}{r.tried:>7}{r.explained:>11}{r.crashed:>9}{r.hung:>6}{r.lost:>6}")
    total = rows and sum(r.tried for r in rows)
    share = 100.0 * sum(r.explained for r in rows) / total if total else 0.0
    lines.append(f"explained {share:.1f} % (target 100 %); crashed, hung, lost: targets 0")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", default=None, help="build the corpus in this folder and keep it")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory()) as tmp:
        rows = run_corpus(Path(tmp))
    print(format_table(rows))
    for r in rows:
        for case, why in r.failures:
            print(f"  {r.group}: {case}: {why}")
    ok = all(r.explained == r.tried and not (r.crashed or r.hung or r.lost) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
