"""Manifests from folder trees and dataset JSON files, path resolution and validation."""
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from dcal.data.lfw import read_lfw_people
from dcal.data.manifest import FaceManifest, filter_people, load_manifest, load_twin_pairs, parse_path_map
from dcal.data.paths import rewrite_prefix
from dcal.data.twins import twin_groups

# A handful of LFW identities: two pairs of twins, a family of three and
# unrelated people with 1 to a few images.
SUBSET = [
    "Tia_Mowry", "Tamara_Mowry", "Venus_Williams", "Serena_Williams", "Oracene_Williams",
    "Ashley_Olsen", "Mary-Kate_Olsen", "Aaron_Peirsol", "Abel_Pacheco", "AJ_Cook",
]


@pytest.fixture(scope="module")
def lfw_full(lfw_images, lfw_twins):
    """All of LFW from the folder tree, scanned once for this module, without opening images."""
    return load_manifest(lfw_images, twins=lfw_twins, verify_images="none")


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def _tiny_png(path: Path, shade: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), shade).save(path)
    return path


def _problem(report, kind):
    matches = [p for p in report.problems if p.kind == kind]
    assert matches, f"no {kind!r} problem in {[p.kind for p in report.problems]}"
    return matches[0]


# ---- LFW: folder tree and JSON agree ---------------------------------------------


def test_lfw_folder_tree_counts(lfw_full):
    report = lfw_full.report

    assert report.identities == 5749
    assert report.images == 13233
    assert report.identities_with_two_or_more == 1680
    assert report.twin_pairs == 36
    assert report.twin_pairs_usable == 36
    assert report.usable
    assert lfw_full.identities() == sorted(lfw_full.identities())


def test_lfw_json_matches_folder_tree(tmp_path, lfw_full, lfw_images, lfw_twins):
    subset = {name: lfw_full.images[name] for name in SUBSET}
    absolute = _write_json(tmp_path / "absolute.json", subset)
    relative = {name: [os.path.relpath(p, tmp_path) for p in paths] for name, paths in subset.items()}
    relative_json = _write_json(tmp_path / "relative.json", relative)

    from_folder = load_manifest(lfw_images, twins=lfw_twins, identities=SUBSET)
    from_absolute = load_manifest(absolute, twins=lfw_twins)
    from_relative = load_manifest(relative_json, twins=lfw_twins)

    assert from_folder.images == subset
    assert from_absolute.images == subset
    assert from_relative.images == subset
    assert from_absolute.twin_pairs == from_folder.twin_pairs
    assert ("Tia_Mowry", "Tamara_Mowry") in from_absolute.twin_pairs


def test_lfw_foreign_paths_need_path_map(tmp_path, lfw_full, lfw_images):
    names = SUBSET[:4]
    foreign = {
        name: [f"/kaggle/input/lfw/{name}/{os.path.basename(p)}" for p in lfw_full.images[name]] for name in names
    }
    foreign["Tia_Mowry"].append("/kaggle/input/lfw/Tia_Mowry/Tia_Mowry_0099.jpg")
    path = _write_json(tmp_path / "dataset_infor.json", foreign)
    listed = sum(len(paths) for paths in foreign.values())

    unmapped = load_manifest(path)
    mapped = load_manifest(path, path_map=[("/kaggle/input/lfw", str(lfw_images))])
    mapped_from_string = load_manifest(path, path_map=[f"/kaggle/input/lfw/={lfw_images}"])

    assert not unmapped.report.usable
    assert unmapped.report.missing_files == listed
    assert "--path-map /kaggle/input/lfw=" in _problem(unmapped.report, "missing_files").message
    assert _problem(unmapped.report, "all_files_missing").severity == "error"
    assert mapped.report.usable
    assert mapped.report.missing_files == 1
    assert _problem(mapped.report, "missing_files").examples == ["/kaggle/input/lfw/Tia_Mowry/Tia_Mowry_0099.jpg"]
    assert mapped.images == {name: lfw_full.images[name] for name in names}
    assert mapped.skipped_files == [("/kaggle/input/lfw/Tia_Mowry/Tia_Mowry_0099.jpg", "file not found")]
    assert mapped_from_string.images == mapped.images


def test_filter_people_devtest(lfw_full, shared_data):
    people = shared_data / "lfw" / "peopleDevTest.txt"

    subset = filter_people(lfw_full, people)

    assert subset.report.identities == 1711
    assert subset.report.images == 3708
    assert set(subset.identities()) == set(read_lfw_people(people))
    assert all(a in subset.images and b in subset.images for a, b in subset.twin_pairs)


def test_lfw_people_files(shared_data):
    lfw = shared_data / "lfw"

    train = read_lfw_people(lfw / "peopleDevTrain.txt")
    test = read_lfw_people(lfw / "peopleDevTest.txt")
    everyone = read_lfw_people(lfw / "people.txt")

    assert len(train) == 4038
    assert len(test) == 1711
    assert not set(train) & set(test)
    assert sum(everyone.values()) == 13233


def test_read_lfw_people_bad_count(tmp_path):
    path = tmp_path / "people.txt"
    path.write_text("3\nA_B\t1\nC_D\t2\n")

    with pytest.raises(ValueError, match="is 3 people"):
        read_lfw_people(path)


# ---- path maps and twin files ----------------------------------------------------------


def test_parse_path_map():
    assert parse_path_map(["/a/b=/c", "x=y=z"]) == [("/a/b", "/c"), ("x", "y=z")]
    with pytest.raises(ValueError, match="expected OLD=NEW"):
        parse_path_map(["/kaggle/input"])
    with pytest.raises(ValueError, match="OLD prefix"):
        parse_path_map(["=/data"])


def test_rewrite_prefix_stops_at_separator():
    assert rewrite_prefix("/data/lfw/a.jpg", "/data/lfw", "/x") == "/x/a.jpg"
    assert rewrite_prefix("/data/lfw/a.jpg", "/data/lfw/", "/x") == "/x/a.jpg"
    assert rewrite_prefix("/data/lfw2/a.jpg", "/data/lfw", "/x") is None


def test_windows_paths_resolve(tmp_path):
    image = _tiny_png(tmp_path / "faces" / "p1" / "1.png")
    _tiny_png(tmp_path / "faces" / "p1" / "2.png")
    path = _write_json(tmp_path / "data.json", {"p1": ["D:\\set\\p1\\1.png", "D:\\set\\p1\\2.png"]})

    manifest = load_manifest(path, path_map=[("D:\\set", str(tmp_path / "faces"))])

    assert manifest.images["p1"][0] == str(image)
    assert manifest.report.missing_files == 0


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"a": "b"}', "expected a JSON list"),
        ('[["a", "b", "c"]]', "index 0"),
        ('[["a", "b"], "c"]', "index 1"),
        ('[["a", null]]', "must be a string or an integer"),
        ('[["a", "b"', "invalid JSON"),
    ],
)
def test_load_twin_pairs_invalid(tmp_path, content, match):
    path = tmp_path / "twins.json"
    path.write_text(content)

    with pytest.raises(ValueError, match=match) as info:
        load_twin_pairs(path)
    assert "twins.json" in str(info.value)


def test_load_twin_pairs_int_ids_and_missing(tmp_path):
    path = _write_json(tmp_path / "twins.json", [[1, 2], ["a", "b"]])

    assert load_twin_pairs(path) == [("1", "2"), ("a", "b")]
    with pytest.raises(FileNotFoundError, match="absent.json"):
        load_twin_pairs(tmp_path / "absent.json")


def test_twin_groups_connect_shared_members():
    pairs = [("a", "b"), ("c", "b"), ("d", "e"), ("f", "f")]

    assert twin_groups(pairs) == [["a", "b", "c"], ["d", "e"]]


# ---- validation of generated problem data -------------------------------------------------


@pytest.fixture
def messy_tree(tmp_path):
    """A folder tree with one example of each problem a user's data can have."""
    root = tmp_path / "faces"
    for person in ("ann", "bob", "cat"):
        for k in range(3):
            _tiny_png(root / person / f"{k}.png", shade=40 * k)
    _tiny_png(root / "dan" / "only.png")
    (root / "ann" / "empty.jpg").write_bytes(b"")
    (root / "bob" / "notes.jpg").write_text("not an image")
    (root / "eve").mkdir()
    (root / "README.txt").write_text("loose file")
    (root / ".hidden").mkdir()
    twins = _write_json(
        tmp_path / "twins.json",
        [["ann", "bob"], ["bob", "cat"], ["ann", "zed"], ["ann", "bob"], ["dan", "dan"]],
    )
    return root, twins


def test_messy_tree_problems(messy_tree):
    root, twins = messy_tree

    manifest = load_manifest(root, twins=twins)
    report = manifest.report

    assert report.usable
    assert manifest.identities() == ["ann", "bob", "cat", "dan"]
    assert report.images == 10
    assert report.listed_files == 12
    assert report.unreadable_files == 2
    assert _problem(report, "unreadable_files").count == 2
    assert _problem(report, "identities_with_one_image").examples == ["dan"]
    assert _problem(report, "empty_identities").examples == ["eve"]
    assert _problem(report, "files_outside_identity_folders").count == 1
    assert _problem(report, "twin_pair_unknown_identity").count == 1
    assert _problem(report, "twin_pair_duplicate").count == 1
    assert _problem(report, "twin_pair_self").count == 1
    assert _problem(report, "twin_identity_in_multiple_pairs").examples == ["bob"]
    assert report.twin_pairs == 5
    assert manifest.twin_pairs == [("ann", "bob"), ("bob", "cat")]
    assert sorted(manifest.skipped_files) == [
        (str(root / "ann" / "empty.jpg"), "empty file (0 bytes)"),
        (str(root / "bob" / "notes.jpg"), "not an image format Pillow can read"),
    ]
    assert all(p.severity == "warning" for p in report.problems)


def test_messy_tree_verify_none_keeps_non_images(messy_tree):
    root, _ = messy_tree

    report = load_manifest(root, verify_images="none").report

    assert report.unreadable_files == 1  # only the empty file
    assert report.images == 11


def test_report_to_dict_keys(messy_tree):
    root, twins = messy_tree

    data = load_manifest(root, twins=twins).report.to_dict()

    for key in ("identities", "images", "twin_pairs", "twin_pairs_usable", "missing_files",
                "unreadable_files", "duplicate_paths", "images_per_identity", "problems", "usable"):
        assert key in data
    assert data["images_per_identity"] == {"min": 1, "median": 3, "max": 3}
    assert set(data["problems"][0]) == {"kind", "severity", "count", "message", "examples"}
    json.dumps(data)


def test_empty_folder_is_error(tmp_path):
    report = load_manifest(tmp_path).report

    assert not report.usable
    assert {p.kind for p in report.errors} == {"no_files_listed", "no_identities"}
    with pytest.raises(ValueError, match="not usable"):
        report.raise_if_unusable()


def test_single_images_only_is_error(tmp_path):
    for person in ("ann", "bob", "cat"):
        _tiny_png(tmp_path / person / "1.png")

    report = load_manifest(tmp_path).report

    assert [p.kind for p in report.errors] == ["too_few_identities"]


def test_json_duplicates_and_merged_keys(tmp_path):
    a1 = str(_tiny_png(tmp_path / "img" / "a1.png"))
    a2 = str(_tiny_png(tmp_path / "img" / "a2.png"))
    b1 = str(_tiny_png(tmp_path / "img" / "b1.png"))
    b2 = str(_tiny_png(tmp_path / "img" / "b2.png"))
    path = tmp_path / "data.json"
    path.write_text(
        '{"a": ["%s", "%s", "%s"], "b": ["%s", "%s"], "a": ["img/b1.png"]}' % (a1, a2, a1, b1, b2),
        encoding="utf-8",
    )

    manifest = load_manifest(path)

    assert manifest.report.duplicate_paths == 2
    assert _problem(manifest.report, "duplicate_identity_keys").examples == ["a"]
    assert manifest.images == {"a": sorted([a1, a2, b1]), "b": [b2]}


@pytest.mark.parametrize(
    "content, match",
    [
        ('["a.jpg"]', "expected a JSON object"),
        ('{"a": "a.jpg"}', "identity 'a'"),
        ('{"a": [1, 2]}', "list of image path strings"),
        ('{"a": [', "invalid JSON"),
    ],
)
def test_dataset_json_invalid(tmp_path, content, match):
    path = tmp_path / "dataset_infor.json"
    path.write_text(content)

    with pytest.raises(ValueError, match=match) as info:
        load_manifest(path)
    assert "dataset_infor.json" in str(info.value)


def test_load_manifest_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        load_manifest(tmp_path / "absent")
    with pytest.raises(ValueError, match="verify_images"):
        load_manifest(tmp_path, verify_images="deep")


# ---- FaceManifest methods ---------------------------------------------------------------------


def test_manifest_samples_and_subset():
    manifest = FaceManifest(
        images={"b": ["/b/2", "/b/1"], "a": ["/a/1", "/a/2"], "c": ["/c/1", "/c/2"]},
        twin_pairs=[("a", "b")],
    )

    assert manifest.identities() == ["a", "b", "c"]
    assert manifest.num_images() == 6
    assert manifest.samples()[:3] == [("/a/1", 0), ("/a/2", 0), ("/b/1", 1)]
    assert manifest.twin_label_groups() == [[0, 1]]
    part = manifest.subset(["b", "c"])
    assert part.identities() == ["b", "c"]
    assert part.twin_pairs == []
    assert part.report.images == 4
    with pytest.raises(ValueError, match="not in"):
        manifest.subset(["a", "zed"])
    assert manifest.subset(["a", "zed"], missing_ok=True).identities() == ["a"]
