"""Identity-disjoint, twin-preserving splits and their JSON files."""
import json

import pytest

from dcal.data.lfw import lfw_image_path, read_lfw_people
from dcal.data.manifest import FaceManifest, load_twin_pairs
from dcal.data.splits import SPLIT_NAMES, given_splits, load_splits, make_splits, save_splits, validate_ratios


def _lfw_manifest(shared_data, people_file="people.txt") -> FaceManifest:
    """LFW's identities and image paths built from its people list, without listing the image folders."""
    lfw = shared_data / "lfw"
    root = lfw / "images_deepfunneled"
    people = read_lfw_people(lfw / people_file)
    images = {name: [str(lfw_image_path(root, name, i)) for i in range(1, n + 1)] for name, n in people.items()}
    pairs = [(a, b) for a, b in load_twin_pairs(lfw / "twin_pairs_infor.json") if a in images and b in images]
    return FaceManifest(images=images, twin_pairs=pairs, source=str(root))


@pytest.fixture(scope="module")
def lfw_manifest(shared_data):
    return _lfw_manifest(shared_data)


def _split_of(splits: dict) -> dict[str, str]:
    return {name: split for split in SPLIT_NAMES for name in splits[split]}


def test_splits_keep_twin_groups_whole(lfw_manifest):
    groups = lfw_manifest.twin_groups()
    assert len(groups) >= 10
    held_out_groups = 0

    for seed in range(50):
        where = _split_of(make_splits(lfw_manifest, seed=seed))
        for group in groups:
            assert len({where[name] for name in group}) == 1, (seed, group)
        held_out_groups += sum(1 for group in groups if where[group[0]] != "train")

    # Twin groups must reach val and test too, at roughly their 20% share.
    assert 0.1 < held_out_groups / (50 * len(groups)) < 0.35


def test_splits_disjoint_and_complete(lfw_manifest):
    splits = make_splits(lfw_manifest, ratios=(0.8, 0.1, 0.1), seed=3)
    sets = [set(splits[name]) for name in SPLIT_NAMES]

    assert not sets[0] & sets[1]
    assert not sets[0] & sets[2]
    assert not sets[1] & sets[2]
    assert sets[0] | sets[1] | sets[2] == set(lfw_manifest.identities())
    assert splits["counts"] == {"train": 4599, "val": 575, "test": 575}
    assert splits["seed"] == 3
    assert splits["ratios"] == [0.8, 0.1, 0.1]


def test_splits_seeded(lfw_manifest):
    first = make_splits(lfw_manifest, seed=7)

    assert make_splits(lfw_manifest, seed=7) == first
    assert make_splits(lfw_manifest, seed=8)["test"] != first["test"]


def test_splits_small_set_with_twins():
    images = {f"p{i:02d}": [f"/x/{i}/1", f"/x/{i}/2"] for i in range(10)}
    manifest = FaceManifest(images=images, twin_pairs=[("p00", "p01"), ("p01", "p02"), ("p03", "p04")])

    for seed in range(20):
        splits = make_splits(manifest, ratios=(0.6, 0.2, 0.2), seed=seed)
        where = _split_of(splits)
        assert where["p00"] == where["p01"] == where["p02"]
        assert where["p03"] == where["p04"]
        assert sum(splits["counts"].values()) == 10


@pytest.mark.parametrize(
    "ratios, match",
    [((0.5, 0.2, 0.2), "sum to 0.9"), ((0.8, 0.3, -0.1), ">= 0"), ((0.5, 0.5), "3 values"), ((0, 0.5, 0.5), "train")],
)
def test_validate_ratios_invalid(ratios, match):
    with pytest.raises(ValueError, match=match):
        validate_ratios(ratios)


def test_save_load_roundtrip(tmp_path, lfw_manifest):
    splits = make_splits(lfw_manifest, seed=1)
    path = tmp_path / "run" / "splits.json"

    save_splits(splits, path)

    assert load_splits(path) == splits
    assert [p.name for p in path.parent.iterdir()] == ["splits.json"]


@pytest.mark.parametrize(
    "content, match",
    [
        ("[1, 2]", "expected a JSON object"),
        ('{"train": [], "val": []}', "'test' list is missing"),
        ('{"train": ["a"], "val": [1], "test": []}', "'val' must be a list"),
        ('{"train": ["a"], "val": ["a"], "test": [], "ratios": [0.8, 0.1, 0.1]}', "both 'train' and 'val'"),
        ('{"train": ', "invalid JSON"),
    ],
)
def test_load_splits_invalid(tmp_path, content, match):
    path = tmp_path / "splits.json"
    path.write_text(content)

    with pytest.raises(ValueError, match=match) as info:
        load_splits(path)
    assert "splits.json" in str(info.value)


def test_load_splits_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="dcal-data split"):
        load_splits(tmp_path / "absent.json")


def test_given_splits_lfw_dev_sets(shared_data):
    train = _lfw_manifest(shared_data, "peopleDevTrain.txt")
    test = _lfw_manifest(shared_data, "peopleDevTest.txt")

    splits = given_splits(train, test, val_ratio=0.1, seed=0)

    assert splits["test"] == test.identities()
    assert set(splits["train"]) | set(splits["val"]) == set(train.identities())
    assert not set(splits["train"]) & set(splits["val"])
    assert abs(len(splits["val"]) - 404) <= 3
    where = _split_of({**splits, "test": []})
    for group in train.twin_groups():
        assert len({where[name] for name in group}) == 1
    assert splits["ratios"] is None
    json.dumps(splits)
