"""Evaluation pairs, the pairs CSV and LFW's pair files."""
import itertools
import math
import os

import pandas as pd
import pytest

from dcal.data.lfw import read_lfw_pairs
from dcal.data.manifest import load_manifest
from dcal.data.pairs import (
    PAIR_COLUMNS,
    _unrank_combination,
    make_eval_pairs,
    read_pairs_csv,
    twin_negative_pairs,
    write_pairs_csv,
)

FAMILIES = [
    "Venus_Williams", "Serena_Williams", "Oracene_Williams",
    "Michael_Schumacher", "Ralf_Schumacher", "Tia_Mowry", "Tamara_Mowry",
]
OTHERS = ["Aaron_Peirsol", "Abel_Pacheco", "Akhmed_Zakayev", "Amber_Tamblyn", "AJ_Cook", "Anna_Kournikova"]


@pytest.fixture(scope="module")
def small_lfw(lfw_images, lfw_twins):
    """Real LFW identities: three twin or sibling groups and six unrelated people."""
    return load_manifest(lfw_images, twins=lfw_twins, identities=FAMILIES + OTHERS, verify_images="none")


def _unordered(frame: pd.DataFrame) -> set:
    return {frozenset((a, b)) for a, b in zip(frame["path_a"], frame["path_b"])}


def test_eval_pairs_all_positives_and_twins(small_lfw):
    images, twins = small_lfw.images, small_lfw.twin_pairs

    frame = make_eval_pairs(images, twins, max_positives=None, max_twin_negatives=None, seed=0)

    assert list(frame.columns) == PAIR_COLUMNS
    positives = frame[frame["kind"] == "positive"]
    twin_negatives = frame[frame["kind"] == "twin_negative"]
    negatives = frame[frame["kind"] == "negative"]
    assert len(positives) == sum(math.comb(len(p), 2) for p in images.values())
    assert len(twin_negatives) == sum(len(images[a]) * len(images[b]) for a, b in twins)
    assert len(negatives) == len(positives)
    assert (positives["identity_a"] == positives["identity_b"]).all()
    assert (positives["label"] == 1).all()
    assert (twin_negatives["label"] == 0).all()
    assert (negatives["label"] == 0).all()
    assert len(_unordered(frame)) == len(frame)


def test_eval_pairs_negatives_avoid_relatives(small_lfw):
    frame = make_eval_pairs(small_lfw.images, small_lfw.twin_pairs, negative_ratio=2.0, seed=1)
    groups = small_lfw.twin_groups()
    negatives = frame[frame["kind"] == "negative"]

    assert len(negatives) > 0
    for a, b in zip(negatives["identity_a"], negatives["identity_b"]):
        assert a != b
        assert not any(a in group and b in group for group in groups), (a, b)


def test_eval_pairs_caps_seeded(small_lfw):
    images, twins = small_lfw.images, small_lfw.twin_pairs

    first = make_eval_pairs(images, twins, max_positives=50, max_twin_negatives=20, negative_ratio=0.5, seed=4)
    again = make_eval_pairs(images, twins, max_positives=50, max_twin_negatives=20, negative_ratio=0.5, seed=4)
    other = make_eval_pairs(images, twins, max_positives=50, max_twin_negatives=20, negative_ratio=0.5, seed=5)

    counts = first["kind"].value_counts().to_dict()
    assert counts == {"positive": 50, "twin_negative": 20, "negative": 25}
    pd.testing.assert_frame_equal(first, again)
    assert _unordered(first) != _unordered(other)


def test_twin_negative_pairs_every_cross_pair():
    images = {"a": ["a1", "a2"], "b": ["b1", "b2", "b3"], "c": ["c1"]}

    frame = twin_negative_pairs(images, [("a", "b"), ("b", "a"), ("a", "zed"), ("c", "c")], max_pairs=None, seed=0)

    assert _unordered(frame) == {frozenset((x, y)) for x in images["a"] for y in images["b"]}
    assert set(frame["kind"]) == {"twin_negative"}
    assert len(twin_negative_pairs(images, [("a", "b")], max_pairs=4, seed=0)) == 4


def test_unrank_combination_matches_itertools():
    for n in range(2, 25):
        expected = list(itertools.combinations(range(n), 2))
        assert [_unrank_combination(rank, n) for rank in range(len(expected))] == expected


def test_eval_pairs_invalid_args():
    with pytest.raises(ValueError, match="max_positives"):
        make_eval_pairs({"a": ["1", "2"]}, [], max_positives=-1)
    with pytest.raises(ValueError, match="negative_ratio"):
        make_eval_pairs({"a": ["1", "2"]}, [], negative_ratio=-0.5)


# ---- CSV ----------------------------------------------------------------------------


def test_pairs_csv_roundtrip(tmp_path, small_lfw):
    frame = make_eval_pairs(small_lfw.images, small_lfw.twin_pairs, max_positives=30, seed=0)
    path = tmp_path / "eval" / "pairs.csv"

    write_pairs_csv(frame, path)
    loaded = read_pairs_csv(path)

    pd.testing.assert_frame_equal(loaded, frame)
    assert path.read_text().splitlines()[0] == ",".join(PAIR_COLUMNS)
    assert [p.name for p in path.parent.iterdir()] == ["pairs.csv"]


@pytest.mark.parametrize(
    "content, match",
    [
        ("path_a,path_b,identity_a,identity_b,label\nx,y,a,b,1\n", "lacks the column\\(s\\) kind"),
        ("path_a,path_b,identity_a,identity_b,label,kind\nx,y,a,b,2,positive\n", "invalid label"),
        ("path_a,path_b,identity_a,identity_b,label,kind\nx,y,a,b,0,cousin\n", "invalid kind 'cousin'"),
        ("", "invalid pairs file"),
    ],
)
def test_read_pairs_csv_invalid(tmp_path, content, match):
    path = tmp_path / "pairs.csv"
    path.write_text(content)

    with pytest.raises(ValueError, match=match) as info:
        read_pairs_csv(path)
    assert "pairs.csv" in str(info.value)


def test_read_pairs_csv_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        read_pairs_csv(tmp_path / "absent.csv")


# ---- LFW pair files -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, folds, per_class",
    [("pairsDevTrain.txt", 1, 1100), ("pairsDevTest.txt", 1, 500), ("pairs.txt", 10, 300)],
)
def test_lfw_pair_files(shared_data, lfw_images, name, folds, per_class):
    frames = read_lfw_pairs(shared_data / "lfw" / name, lfw_images)

    assert len(frames) == folds
    for frame in frames:
        assert list(frame.columns) == PAIR_COLUMNS
        assert (frame["label"] == 1).sum() == per_class
        assert (frame["label"] == 0).sum() == per_class
        assert (frame["kind"].iloc[:per_class] == "positive").all()
        assert (frame["identity_a"].iloc[per_class:] != frame["identity_b"].iloc[per_class:]).all()
    paths = {p for frame in frames for p in itertools.chain(frame["path_a"], frame["path_b"])}
    missing = [p for p in paths if not os.path.isfile(p)]
    assert missing == []


def test_lfw_pairs_wrong_line_count(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("2\nA_B\t1\t2\nC_D\t1\tE_F\t1\n")

    with pytest.raises(ValueError, match="has 2 pair lines"):
        read_lfw_pairs(path, tmp_path)


def test_lfw_pairs_bad_line(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("1\nA_B\t1\nC_D\t1\tE_F\t1\n")

    with pytest.raises(ValueError, match="line 2"):
        read_lfw_pairs(path, tmp_path)
