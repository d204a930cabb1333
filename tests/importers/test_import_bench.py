"""``bench/import.py`` measures every importer against a floor doing the same encoding work."""
import importlib.util
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("import_bench", ROOT / "bench" / "import.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_floor_encodes_what_every_importer_writes(tmp_path):
    bench = _bench()
    for dataset in bench.MAKERS:
        folder = tmp_path / dataset
        folder.mkdir()
        # With stages, measure asserts that the shard writer encoded exactly the floor's images.
        m = bench.measure(dataset, folder, 3, 1, True, "photo")
        assert m.samples >= 3, dataset
        per_record = {"refcoco": 2, "grefcoco": 2, "reasonseg": 2, "cocostuff": 2}.get(dataset, 1)
        assert m.samples == 3 * per_record, dataset
        for seconds in (m.decode, m.encode, m.job, m.importer, m.writer):
            assert math.isfinite(seconds) and seconds > 0, (dataset, m)
        assert m.job > m.encode, dataset  # the import encodes what the floor does, and more
