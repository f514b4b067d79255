"""The DCAL model: backbone wrapper, attention variants, heads and checkpoints."""
from .checkpoint import load_checkpoint, read_checkpoint_config, resolve_checkpoint_dir, save_checkpoint
from .network import DCALConfig, DCALModel
from .rollout import attention_rollout, class_token_rollout, select_local_tokens

__all__ = [
    "DCALConfig",
    "DCALModel",
    "attention_rollout",
    "class_token_rollout",
    "select_local_tokens",
    "load_checkpoint",
    "read_checkpoint_config",
    "resolve_checkpoint_dir",
    "save_checkpoint",
]
