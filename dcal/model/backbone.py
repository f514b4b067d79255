"""Create a timm ViT/DeiT backbone with weights from the hub, a local file, or none.

Position embeddings are resampled to the requested input size by timm's own
checkpoint filter, so a 224 px checkpoint serves a 448 px model.
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import Block, VisionTransformer, checkpoint_filter_fn

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def hub_unreachable_reason(timeout: float = 5.0) -> str | None:
    """Return why the Hugging Face hub cannot be reached, or None when it accepts a connection.

    huggingface_hub retries for about a minute before giving up offline, so one
    TCP connection with a short timeout finds the same in seconds.
    """
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return f"{endpoint.hostname}:{port} is unreachable ({exc})"
    return None


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a weights file without unpickling arbitrary objects."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    # Training checkpoints often nest the weights one level down.
    for key in ("state_dict", "model", "model_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    return state


def load_backbone_weights(model: VisionTransformer, path: str | os.PathLike) -> None:
    """Load a local .safetensors/.pth file into ``model``, resampling position embeddings.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file does not hold weights for this architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"backbone weights file {path} must end in one of {', '.join(WEIGHT_SUFFIXES)}")
    try:
        state = _load_state_dict(path)
    except Exception as exc:  # safetensors and torch raise several types for corrupt files
        raise ValueError(f"could not read backbone weights from {path}: {exc}") from exc
    state = checkpoint_filter_fn(state, model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The classifier is removed (num_classes=0), so its keys are expected leftovers.
    unexpected = [k for k in unexpected if not k.startswith("head.")]
    if missing or unexpected:
        raise ValueError(
            f"weights in {path} do not match {type(model).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}; check that the file was "
            "saved from the same timm architecture"
        )
    logger.info("loaded backbone weights from %s", path)


def _in_hub_cache(name: str) -> bool:
    """Check whether timm's weights for ``name`` are already in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hf_hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id
        if not hf_hub_id:
            return False
        repo, _, revision = hf_hub_id.partition("@")
        for filename in ("model.safetensors", "pytorch_model.bin"):
            cached = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(cached, str):
                return True
    except Exception:  # any lookup failure means "not cached"
        return False
    return False


def create_backbone(
    name: str,
    img_size: int,
    weights: str = "none",
    drop_path_rate: float = 0.0,
    depth: int | None = None,
) -> VisionTransformer:
    """Build a timm ViT or DeiT without its classifier.

    Args:
        name: timm model name, for example ``vit_base_patch16_224`` or ``deit_tiny_patch16_224``.
        img_size: square input size in pixels; position embeddings are resampled to it.
        weights: ``"none"`` for random initialisation, ``"timm"`` for timm's
            pretrained weights from the Hugging Face hub, or a path to a local
            .safetensors/.pth file.
        drop_path_rate: stochastic depth rate over the blocks.
        depth: number of blocks, to build a shallower variant; None keeps timm's depth.

    Raises:
        ValueError: the name is not a plain timm ViT, or hub weights cannot be fetched.
        FileNotFoundError: a weights file does not exist.
    """
    if name not in timm.list_models():
        raise ValueError(f"unknown timm model {name!r}; list ViTs with timm.list_models('vit_*')")
    kwargs = dict(num_classes=0, img_size=img_size, drop_path_rate=drop_path_rate, dynamic_img_size=False)
    if depth is not None:
        kwargs["depth"] = depth
    if weights == "timm":
        reason = hub_unreachable_reason()
        if reason is not None and not _in_hub_cache(name):
            raise ValueError(
                f"cannot fetch pretrained weights for {name}: {reason}. Download the timm weights elsewhere and "
                "pass the .safetensors or .pth file as the weights (for example --weights /path/model.safetensors), "
                "or use --weights none to start from random weights"
            )
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # huggingface_hub raises many types when offline
            raise ValueError(
                f"could not fetch pretrained weights for {name} from the hub ({type(exc).__name__}: {exc}). "
                "Offline, download the timm weights elsewhere and pass the .safetensors or .pth file "
                "as the weights (for example --weights /path/model.safetensors), or use --weights none"
            ) from exc
    else:
        model = timm.create_model(name, pretrained=False, **kwargs)
        if weights not in ("none", "", None):
            load_backbone_weights(model, weights)

    if not isinstance(model, VisionTransformer) or not all(type(b) is Block for b in model.blocks):
        raise ValueError(f"{name} is not a plain timm VisionTransformer with standard blocks; DCAL needs one")
    if model.global_pool != "token" or model.num_prefix_tokens != 1:
        raise ValueError(f"{name} must use a single class token (got global_pool={model.global_pool!r}, "
                         f"{model.num_prefix_tokens} prefix tokens)")
    return model
