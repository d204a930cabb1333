"""Every dataset's Parquet table has one schema: a user's perception, understanding and published
reasoning tables read as one table with pyarrow.dataset, DuckDB and pandas."""
from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from datagen.jobs import JobConfig, get_builder, open_source, run_job
from datagen.review.records import review_record
from datagen.schema import EditSample
from datagen.shards import ShardWriter, build_manifest, load_manifest, sample_table
from datagen.shards.sampletable import parquet_schema


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """``{scenario: parquet path}`` of three datasets made by the real builders on one demo scene;
    the reasoning one is published as ``publish-reviewed`` does (approved review records)."""
    root = tmp_path_factory.mktemp("tables")
    paths = {}
    for scenario in ("perception", "understanding"):
        config = JobConfig(scenario, source="demo:1", out=str(root / scenario), name=scenario,
                           manifest_dir=str(root / "manifests"))
        manifest = load_manifest(run_job(config).manifest)
        paths[scenario] = root / scenario / f"{scenario}.parquet"
        assert manifest["index"]["rows"] == manifest["nsamples"] > 0
    config = JobConfig("reasoning", source="demo:1", out=str(root / "reasoning"), name="reasoning")
    catalog, builder = open_source(config), get_builder(config)
    with ShardWriter(root / "reasoning", "published") as writer:
        for record_id in catalog.ids():
            for item in builder(catalog.load(record_id)):
                if isinstance(item, EditSample):
                    item.review = review_record("approved", [("ana", "approve", 1.7e9, None, None, None)], 1.7e9, rule="single",
                                                required=1, case_id=item.provenance.get("case_id", ""))
                    writer.write(item)
    assert writer.written > 0
    build_manifest(root / "reasoning", "reasoning", root / "manifests")
    paths["reasoning"] = root / "reasoning" / "reasoning.parquet"
    return paths


def test_every_table_has_the_one_schema(tables):
    for scenario, path in tables.items():
        schema = pads.dataset(path, format="parquet").schema.remove_metadata()
        assert schema.equals(parquet_schema()), scenario
        assert not [name for name in schema.names if "." in name]
        # Typed even where every value is null (no sample of these two was reviewed).
        assert schema.field("review_status").type == pa.string()


def test_pyarrow_dataset_reads_all_tables_as_one(tables):
    table = pads.dataset([pads.dataset(p, format="parquet") for p in tables.values()]).to_table()
    # The same through the manifests: every table a folder of manifests names, as one dataset.
    through_manifests = sample_table(tables["reasoning"].parent.parent / "manifests")
    assert through_manifests.count_rows() == table.num_rows
    assert through_manifests.schema.equals(parquet_schema())
    per_file = {s: pads.dataset(p, format="parquet").count_rows() for s, p in tables.items()}
    assert table.num_rows == sum(per_file.values())
    scenarios = table.column("scenario").to_pylist()
    assert {s: scenarios.count(s) for s in tables} == per_file
    rows = table.to_pylist()
    reasoning = [r for r in rows if r["scenario"] == "reasoning"]
    assert {r["review_status"] for r in reasoning} == {"approved"}
    assert all(r["review"]["decisions"][0]["reviewer"] == "ana" for r in reasoning)
    assert all(r["paraphrases"] for r in rows)  # every builder writes paraphrases, and they are kept
    understanding = [r for r in rows if r["scenario"] == "understanding"]
    assert all(r["provenance"]["masker"]["name"] == "grabcut" for r in understanding)
    assert all(len(r["target"]["box"]) == 4 for r in rows)


def test_duckdb_and_pandas_query_all_tables(tables):
    files = [f"{p}/*.parquet" for p in tables.values()]
    got = duckdb.sql(f"""
        SELECT scenario, count(*) AS n, count(review_status) AS reviewed,
               min(len(paraphrases)) AS min_paraphrases, count(quality.scores['mask_frac']) AS with_mask_frac
        FROM read_parquet({files}) GROUP BY scenario ORDER BY scenario""").fetchall()
    counts = {s: pads.dataset(p, format="parquet").count_rows() for s, p in tables.items()}
    assert [(s, n, r) for s, n, r, _, _ in got] == [
        ("perception", counts["perception"], 0), ("reasoning", counts["reasoning"], counts["reasoning"]),
        ("understanding", counts["understanding"], 0)]
    assert all(m >= 1 for *_, m, _ in got)
    assert dict((s, w) for s, *_, w in got)["understanding"] == counts["understanding"]

    frames = [pd.read_parquet(p) for p in tables.values()]
    assert len({tuple(map(str, f.dtypes)) for f in frames}) == 1
    both = pd.concat(frames, ignore_index=True)
    assert len(both) == sum(counts.values()) and both["key"].is_unique


def test_the_schema_id_names_this_schema():
    """Changing the schema means bumping ``SCHEMA_ID`` (so old tables get rebuilt) and this pin."""
    import hashlib

    from datagen.shards.sampletable import SCHEMA_ID

    text = parquet_schema().to_string(show_field_metadata=False, show_schema_metadata=False)
    assert (SCHEMA_ID, hashlib.sha256(text.encode()).hexdigest()[:16]) == ("smartedit-sample-table/2", "e93c61869d9bb1a5")
