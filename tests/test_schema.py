import numpy as np
import pytest

from datagen.schema import EditSample, ImageRecord, Instance, SampleError, sample_key


def _sample(**over):
    img = np.zeros((8, 10, 3), np.uint8)
    mask = np.zeros((8, 10), bool)
    mask[2:4, 3:6] = True
    fields = dict(key=sample_key("rec", 1), src=img, tgt=img.copy(), mask=mask,
                  instruction="Remove the left cat", scenario="understanding", op="remove")
    fields.update(over)
    return EditSample(**fields)


def test_valid_sample_round_trips_metadata():
    s = _sample().validate()
    back = EditSample.from_parts(s.metadata(), s.src, s.tgt, s.mask)
    assert back.metadata() == s.metadata()


def test_key_is_stable_and_dot_free():
    assert sample_key("coco:1", "inst3", "remove", {"b": 1, "a": 2}) == sample_key(
        "coco:1", "inst3", "remove", {"a": 2, "b": 1})
    assert "." not in sample_key("a.b", 1.5)
    assert sample_key("a") != sample_key("b")


@pytest.mark.parametrize("over, message", [
    (dict(key="abc.def"), "no dots"),
    (dict(src=np.zeros((8, 10), np.uint8)), "HxWx3"),
    (dict(tgt=np.zeros((8, 10, 3), np.float32)), "uint8"),
    (dict(tgt=np.zeros((9, 10, 3), np.uint8)), "differs"),
    (dict(mask=np.zeros((8, 10), bool)), "empty"),
    (dict(mask=np.ones((8, 10), np.uint8)), "bool"),
    (dict(mask=np.ones((8, 11), bool)), "does not match"),
    (dict(op="explode"), "unknown op"),
    (dict(scenario="fun"), "unknown scenario"),
    (dict(instruction="  "), "non-empty"),
    (dict(review={"status": "maybe"}), "review"),
    (dict(target={"box": np.zeros(2)}), "JSON"),
])
def test_validation_errors_name_the_problem(over, message):
    with pytest.raises(SampleError, match=message):
        _sample(**over).validate()


def test_record_validation_catches_bad_box_and_duplicate_ids():
    img = np.zeros((20, 30, 3), np.uint8)
    ok = Instance("a", "cat", (1, 1, 10, 10))
    with pytest.raises(SampleError, match="outside"):
        ImageRecord("r", img, [Instance("b", "cat", (0, 0, 40, 10))]).validate()
    with pytest.raises(SampleError, match="duplicate"):
        ImageRecord("r", img, [ok, ok]).validate()
    with pytest.raises(SampleError, match="no area"):
        ImageRecord("r", img, [Instance("c", "cat", (5, 5, 5, 9))]).validate()
