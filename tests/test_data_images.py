"""Image loader, transforms and bad-file handling in datasets."""
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dcal.data import images as images_module
from dcal.data.dataset import FaceImageDataset, PathDataset, collate_paths, collate_skip_bad
from dcal.data.images import ImageLoadError, check_image, load_image, to_rgb
from dcal.data.transforms import build_transform

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def _lfw_file(lfw_images: Path, name: str = "Tia_Mowry", number: int = 1) -> Path:
    return lfw_images / name / f"{name}_{number:04d}.jpg"


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """Write a PNG whose header declares width x height over a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


# ---- modes and formats -------------------------------------------------------


@pytest.mark.parametrize(
    "mode, suffix",
    [("L", ".png"), ("LA", ".png"), ("P", ".png"), ("RGBA", ".png"), ("CMYK", ".jpg"), ("I;16", ".png"), ("1", ".png")],
)
def test_load_image_mode_to_rgb(tmp_path, mode, suffix):
    image = _image_in_mode(mode, (24, 16))
    path = tmp_path / f"{mode.replace(';', '_')}{suffix}"
    image.save(path)
    assert Image.open(path).mode == mode

    loaded = load_image(path)

    assert loaded.mode == "RGB"
    assert loaded.size == (24, 16)


def _image_in_mode(mode: str, size: tuple[int, int]) -> Image.Image:
    if mode == "I;16":
        return Image.fromarray(np.full((size[1], size[0]), 40000, np.uint16))
    return Image.new("RGB", size, (200, 120, 40)).convert(mode)


def test_to_rgb_each_mode_in_memory():
    """Modes such as PA, YCbCr, I and F have no common file format, so convert them directly."""
    for mode in ("L", "LA", "P", "PA", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F", "1"):
        converted = to_rgb(_image_in_mode(mode, (8, 6)))
        assert converted.mode == "RGB", mode
        assert converted.size == (8, 6), mode


def test_load_image_16bit_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)

    pixels = np.asarray(load_image(path))

    assert pixels[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (pixels[..., 0] == pixels[..., 2]).all()


def test_load_image_transparent_on_black(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (4, 4), (255, 255, 255, 0)).save(path)

    assert np.asarray(load_image(path)).max() == 0


def test_load_image_orl_pgm(shared_data):
    image = load_image(shared_data / "att_faces" / "s1" / "1.pgm")

    assert image.mode == "RGB"
    assert image.size == (92, 112)


def test_load_image_yale_gif_without_extension(shared_data):
    """Yale faces are GIF files named subjectNN.condition, with no image extension."""
    path = shared_data / "yalefaces" / "subject01.happy"
    assert path.suffix == ".happy"

    image = load_image(path)

    assert image.mode == "RGB"
    assert image.size == (320, 243)


def test_load_image_lfw_jpeg(lfw_images):
    image = load_image(_lfw_file(lfw_images))

    assert image.mode == "RGB"
    assert image.size == (250, 250)


def test_load_image_exif_orientation(tmp_path):
    """Orientation 6 means the stored pixels must turn 90 degrees clockwise to be upright."""
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 8, 8))  # red marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)

    upright = load_image(path)

    assert upright.size == (20, 40)
    top_right = upright.getpixel((16, 3))
    top_left = upright.getpixel((3, 3))
    assert top_right[0] > 200  # red marker
    assert top_right[2] < 60
    assert top_left[2] > 200  # blue background
    assert top_left[0] < 60


def test_load_image_non_ascii_path(tmp_path, lfw_images):
    folder = tmp_path / "Zoë Ångström"
    folder.mkdir()
    path = folder / "顔_0001.jpg"
    path.write_bytes(_lfw_file(lfw_images).read_bytes())

    assert load_image(path).size == (250, 250)
    assert load_image(str(path)).mode == "RGB"


# ---- bad files -----------------------------------------------------------------


def test_load_image_zero_byte(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")

    with pytest.raises(ImageLoadError, match="empty file") as info:
        load_image(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


def test_load_image_truncated_jpeg(tmp_path, lfw_images):
    data = _lfw_file(lfw_images).read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(ImageLoadError, match="truncated") as info:
        load_image(path)
    assert "truncated.jpg" in str(info.value)


def test_check_image_header_misses_truncation(tmp_path, lfw_images):
    """The cheap header check cannot see a cut-off JPEG; only a full decode does."""
    data = _lfw_file(lfw_images).read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])

    check_image(path, "header")
    with pytest.raises(ImageLoadError):
        check_image(path, "full")


def test_load_image_text_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image\n")

    with pytest.raises(ImageLoadError, match="not an image format") as info:
        load_image(path)
    assert "notes.jpg" in str(info.value)
    with pytest.raises(ImageLoadError):
        check_image(path, "header")


def test_load_image_missing_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "absent.jpg")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)


def test_load_image_bomb_over_limit(tmp_path):
    """A 60-megapixel header in a tiny file is rejected before any pixel is decoded."""
    path = _png_header_only(tmp_path / "bomb.png", 10_000, 6_000)
    assert path.stat().st_size < 200

    with pytest.raises(ImageLoadError, match="decompression bomb") as info:
        load_image(path)
    assert "bomb.png" in str(info.value)
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        check_image(path, "header")


def test_load_image_lowered_limit(tmp_path, lfw_images, monkeypatch):
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 250 * 250 - 1)

    with pytest.raises(ImageLoadError, match="62500 pixels"):
        load_image(_lfw_file(lfw_images))
    assert load_image(_lfw_file(lfw_images), max_pixels=250 * 250).size == (250, 250)


def test_load_image_pillow_bomb_warning_is_error(tmp_path, monkeypatch):
    """With dcal's limit switched off, Pillow's own DecompressionBombWarning still rejects the file."""
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    path = _png_header_only(tmp_path / "warn.png", 40, 40)  # 1,600 pixels: warning range, under 2x

    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path)


def test_image_load_error_contract(tmp_path):
    error = ImageLoadError(tmp_path / "x.jpg", "empty file (0 bytes)")

    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert copy.path == error.path
    assert copy.reason == error.reason
    assert str(copy) == str(error)


# ---- transforms ------------------------------------------------------------------


def test_build_transform_eval_shape(lfw_images):
    transform = build_transform(64, MEAN, STD, train=False)

    tensor = transform(load_image(_lfw_file(lfw_images)))

    assert tensor.shape == (3, 64, 64)
    assert tensor.dtype == torch.float32
    assert torch.equal(tensor, transform(load_image(_lfw_file(lfw_images))))


def test_build_transform_train_shape_no_flip(lfw_images):
    transform = build_transform(48, MEAN, STD, train=True)
    names = [type(step).__name__ for step in transform.transforms]

    tensor = transform(load_image(_lfw_file(lfw_images)))

    assert tensor.shape == (3, 48, 48)
    assert "RandomHorizontalFlip" not in names
    assert "RandomRotation" in names
    assert "ColorJitter" in names
    flipping = build_transform(48, MEAN, STD, train=True, hflip=0.5)
    assert "RandomHorizontalFlip" in [type(step).__name__ for step in flipping.transforms]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"img_size": 0}, "img_size"),
        ({"std": (0.5, 0.0, 0.5)}, "std"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"hflip": 1.5}, "hflip"),
        ({"scale": (0.9, 0.5)}, "scale"),
    ],
)
def test_build_transform_invalid_args(kwargs, match):
    args = {"img_size": 32, "mean": MEAN, "std": STD, "train": True, **kwargs}

    with pytest.raises(ValueError, match=match):
        build_transform(**args)


# ---- datasets ----------------------------------------------------------------------


def test_dataset_skips_bad_file_in_batch(tmp_path, lfw_images, caplog):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 cut")
    samples = [(str(_lfw_file(lfw_images, "Tia_Mowry", 1)), 0), (str(bad), 1), (str(_lfw_file(lfw_images, "Tamara_Mowry", 1)), 2)]
    dataset = FaceImageDataset(samples, build_transform(32, MEAN, STD, train=False))
    loader = DataLoader(dataset, batch_size=3, collate_fn=collate_skip_bad)

    images, labels, indices, num_bad = next(iter(loader))

    assert images.shape == (2, 3, 32, 32)
    assert labels.tolist() == [0, 2]
    assert indices.tolist() == [0, 2]
    assert num_bad == 1
    assert "bad.jpg" in caplog.text


def test_collate_skip_bad_all_bad():
    images, labels, indices, num_bad = collate_skip_bad([None, None])

    assert images.numel() == 0
    assert labels.numel() == 0
    assert indices.numel() == 0
    assert num_bad == 2


def test_path_dataset_reports_failures(tmp_path, lfw_images):
    missing = tmp_path / "gone.jpg"
    paths = [_lfw_file(lfw_images), missing]
    dataset = PathDataset(paths, build_transform(32, MEAN, STD, train=False))

    images, indices_ok, failures = collate_paths([dataset[0], dataset[1]])

    assert images.shape == (1, 3, 32, 32)
    assert indices_ok.tolist() == [0]
    assert len(failures) == 1
    assert failures[0][0] == 1
    assert "gone.jpg" in failures[0][1]
    assert "file not found" in failures[0][1]
    empty_images, empty_indices, all_failed = collate_paths([dataset[1]])
    assert empty_images.numel() == 0
    assert len(all_failed) == 1
