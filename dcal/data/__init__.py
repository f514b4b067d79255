"""Face data: image loading, manifests, splits, batch sampling and evaluation pairs.

Names are imported on first use, so that ``dcal-data check`` and other
commands without tensors do not pay for importing torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "dataset": ["FaceImageDataset", "PathDataset", "collate_paths", "collate_skip_bad"],
    "images": ["MAX_IMAGE_PIXELS", "ImageLoadError", "check_image", "load_image"],
    "lfw": ["lfw_image_path", "read_lfw_pairs", "read_lfw_people"],
    "manifest": ["FaceManifest", "filter_people", "load_manifest"],
    "pairs": ["make_eval_pairs", "read_pairs_csv", "twin_negative_pairs", "write_pairs_csv"],
    "paths": ["parse_path_map"],
    "report": ["DataReport", "Problem"],
    "sampler": ["IdentityBatchSampler"],
    "splits": ["given_splits", "load_splits", "make_splits", "save_splits"],
    "transforms": ["build_transform"],
    "twins": ["load_twin_pairs", "twin_groups"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
