"""DCAL: a timm ViT with global-local and pair-wise cross-attention.

Zhu et al., "Dual Cross-Attention Learning for Fine-Grained Visual
Categorization and Object Re-Identification", CVPR 2022 (arXiv:2205.02151).

- SA stream: the backbone's own blocks, run with explicit attention so their
  probabilities feed attention rollout.
- GLCA: M blocks with their own weights (copies of the last M SA blocks at
  creation). Queries are the class token plus the top-R patch tokens by the
  class token's rollout row. Keys and values are all tokens of the SA stream
  at the same depth.
- PWCA: training only, weights shared with SA. Queries come from image 1;
  keys and values are image 1's and a partner image's tokens concatenated at
  the same depth, under one softmax.

Shape legend: B batch, N tokens including the class token, L local queries
(class token + top-R patches), C width, E embedding size, K identities.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from .attention import cross_attention_block, self_attention_block
from .backbone import create_backbone
from .heads import BNNeck, VerificationHead
from .rollout import class_token_rollout, select_local_tokens


@dataclass
class DCALConfig:
    """Architecture of a DCAL model; stored in every checkpoint."""

    backbone: str = "vit_base_patch16_224"
    img_size: int = 224  # square input, pixels
    depth: int | None = None  # number of ViT blocks; None keeps the timm model's own depth
    weights: str = "none"  # "none", "timm" (hub) or a local .safetensors/.pth path; only used at creation
    glca_blocks: int = 1  # M; 0 disables GLCA
    local_ratio: float = 0.15  # R: share of patch tokens used as GLCA queries
    pwca_blocks: int | None = None  # T; None means every block; 0 disables PWCA
    drop_path_rate: float = 0.0
    head_hidden: int = 512  # verification head MLP width
    num_classes: int = 0  # identity classifiers for training; 0 for inference only
    mean: tuple[float, ...] = field(default=())  # filled from the backbone's pretrained config
    std: tuple[float, ...] = field(default=())

    def __post_init__(self):
        if self.img_size <= 0:
            raise ValueError(f"img_size must be positive, got {self.img_size}")
        if self.glca_blocks < 0:
            raise ValueError(f"glca_blocks must be >= 0, got {self.glca_blocks}")
        if not 0.0 < self.local_ratio <= 1.0:
            raise ValueError(f"local_ratio must be in (0, 1], got {self.local_ratio}")
        if self.pwca_blocks is not None and self.pwca_blocks < 0:
            raise ValueError(f"pwca_blocks must be >= 0 or None, got {self.pwca_blocks}")
        self.mean, self.std = tuple(self.mean), tuple(self.std)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DCALConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; the checkpoint may come from a newer dcal")
        return cls(**values)


class DCALModel(nn.Module):
    """DCAL face model: embeddings for search, a pair head for verification."""

    def __init__(self, config: DCALConfig):
        super().__init__()
        self.backbone = create_backbone(config.backbone, config.img_size, config.weights,
                                        config.drop_path_rate, config.depth)
        pretrained = self.backbone.pretrained_cfg
        if not config.mean:
            config.mean = tuple(pretrained.get("mean", (0.5, 0.5, 0.5)))
            config.std = tuple(pretrained.get("std", (0.5, 0.5, 0.5)))
        self.config = config
        width = self.backbone.embed_dim
        depth = len(self.backbone.blocks)
        if config.glca_blocks > depth:
            raise ValueError(f"glca_blocks={config.glca_blocks} exceeds the backbone depth {depth}")
        self.num_pwca_blocks = depth if config.pwca_blocks is None else min(config.pwca_blocks, depth)

        # GLCA starts as a copy of the last M SA blocks: a trained block is a
        # far better start than random weights, and the copies then diverge.
        self.glca = nn.ModuleList(copy.deepcopy(self.backbone.blocks[depth - i - 1])
                                  for i in reversed(range(config.glca_blocks)))
        self.glca_norm = copy.deepcopy(self.backbone.norm) if config.glca_blocks else None
        self.sa_neck = BNNeck(width)
        self.glca_neck = BNNeck(width) if config.glca_blocks else None
        self.embed_dim = width * (2 if config.glca_blocks else 1)
        self.head = VerificationHead(self.embed_dim, config.head_hidden)

        # Identity classifiers exist only for training; PWCA reuses the SA one.
        self.classifiers = nn.ModuleDict()
        if config.num_classes:
            self.classifiers["sa"] = nn.Linear(width, config.num_classes, bias=False)
            if config.glca_blocks:
                self.classifiers["glca"] = nn.Linear(width, config.num_classes, bias=False)
            for layer in self.classifiers.values():
                nn.init.normal_(layer.weight, std=0.001)

    @property
    def width(self) -> int:
        return self.backbone.embed_dim

    # ----------------------------------------------------------------- streams

    def _tokens(self, images: torch.Tensor) -> torch.Tensor:
        vit = self.backbone
        x = vit.patch_embed(images)
        x = vit._pos_embed(x)
        x = vit.patch_drop(x)
        return vit.norm_pre(x)  # (B, N, C)

    def forward_sa(self, images: torch.Tensor):
        """Run the SA stream.

        Returns:
            tokens: (B, N, C) after the final norm, equal to timm's ``forward_features``.
            hidden: list of L+1 tensors (B, N, C), the input of each block and the last output.
            attentions: list of L attention maps (B, H, N, N).
        """
        x = self._tokens(images)
        hidden, attentions = [x], []
        for block in self.backbone.blocks:
            x, probs = self_attention_block(block, x)
            hidden.append(x)
            attentions.append(probs)
        return self.backbone.norm(x), hidden, attentions

    def forward_glca(self, hidden: list[torch.Tensor], attentions: list[torch.Tensor]):
        """Run the GLCA blocks; returns the local tokens (B, L, C) and their indices (B, L)."""
        with torch.no_grad():
            rollout = class_token_rollout(attentions)  # (B, 1, N): row 0 is all GLCA needs
            index = select_local_tokens(rollout, self.config.local_ratio, self.backbone.num_prefix_tokens)
        depth = len(self.backbone.blocks)
        start = depth - len(self.glca)
        C = hidden[0].shape[-1]
        x = torch.gather(hidden[start], 1, index.unsqueeze(-1).expand(-1, -1, C))  # (B, L, C)
        for i, block in enumerate(self.glca):
            x = cross_attention_block(block, x, hidden[start + i])
        return self.glca_norm(x), index

    def forward_pwca(self, hidden: list[torch.Tensor], partner: torch.Tensor) -> torch.Tensor:
        """Run PWCA over the first T SA blocks; returns the class token (B, C) after the final norm.

        Args:
            hidden: the SA stream's block inputs from :meth:`forward_sa`.
            partner: (B,) index of each image's distractor within the batch.
        """
        blocks = self.backbone.blocks
        x = hidden[0]
        for i in range(self.num_pwca_blocks):
            keys = torch.cat([x, hidden[i][partner]], dim=1)  # (B, 2N, C)
            x = cross_attention_block(blocks[i], x, keys)
        # Blocks past T (if T < L) run as plain self-attention.
        for i in range(self.num_pwca_blocks, len(blocks)):
            x, _ = self_attention_block(blocks[i], x)
        return self.backbone.norm(x)[:, 0]

    # ---------------------------------------------------------------- features

    @staticmethod
    def glca_feature(local_tokens: torch.Tensor) -> torch.Tensor:
        """Pool GLCA's outputs: the mean of the class token and the mean local token.

        NOTE: with one GLCA block whose keys are the full SA tokens, the class
        token's own output does not depend on which patches were selected,
        because each attention row is computed independently. Pooling in the
        selected patch outputs is what lets the top-R selection shape the
        feature; the DCAL paper does not pin down this detail.
        """
        return 0.5 * (local_tokens[:, 0] + local_tokens[:, 1:].mean(dim=1))  # (B, C)

    def features(self, images: torch.Tensor, partner: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Return the branch features (pre-neck), and the PWCA class token when a partner is given."""
        tokens, hidden, attentions = self.forward_sa(images)
        out = {"sa": tokens[:, 0]}
        if len(self.glca):
            local, index = self.forward_glca(hidden, attentions)
            out["glca"] = self.glca_feature(local)
            out["local_index"] = index
        if partner is not None and self.num_pwca_blocks:
            out["pwca"] = self.forward_pwca(hidden, partner)
        return out

    def embedding_from_features(self, feats: dict[str, torch.Tensor], parts: str = "sa+glca") -> torch.Tensor:
        """Concatenate the BN-neck features named in ``parts`` and L2-normalise.

        ``parts`` is "sa+glca" (the model's embedding), "sa" or "glca" (ablations).
        """
        pieces = []
        if "sa" in parts.split("+"):
            pieces.append(F.normalize(self.sa_neck(feats["sa"]).float(), dim=-1))
        if "glca" in parts.split("+"):
            if "glca" not in feats:
                raise ValueError("this model has no GLCA branch; use parts='sa'")
            pieces.append(F.normalize(self.glca_neck(feats["glca"]).float(), dim=-1))
        # Each part is normalised first so that neither dominates the cosine.
        return F.normalize(torch.cat(pieces, dim=-1), dim=-1)  # (B, E)

    def embed(self, images: torch.Tensor, parts: str = "sa+glca") -> torch.Tensor:
        """Return float32 embeddings (B, E) with unit L2 norm for images (B, 3, S, S)."""
        if not len(self.glca) and parts == "sa+glca":
            parts = "sa"
        return self.embedding_from_features(self.features(images), parts)

    def verify_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Return same-person logits (B,) for embedding pairs; symmetric in a and b."""
        return self.head(a, b)

    def forward(self, images: torch.Tensor, partner: torch.Tensor | None = None,
                pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Training forward: embeddings, identity logits per branch and the neck features.

        Args:
            images: (B, 3, S, S) batch.
            partner: (B,) index of each image's PWCA distractor in the batch; None skips PWCA.
            pairs: (left, right) index tensors (P,) of in-batch pairs to score with
                the verification head; their logits come back as ``pair_logits``.
                Scoring inside ``forward`` keeps the head under DDP's gradient sync.
        """
        feats = self.features(images, partner)
        out = {"embedding": self.embedding_from_features(feats, "sa+glca" if len(self.glca) else "sa")}
        if pairs is not None:
            left, right = pairs
            out["pair_logits"] = self.head(out["embedding"][left], out["embedding"][right])
        sa = self.sa_neck(feats["sa"])
        out["sa_feature"] = sa
        if "sa" in self.classifiers:
            out["sa_logits"] = self.classifiers["sa"](sa)
            if "glca" in feats:
                out["glca_logits"] = self.classifiers["glca"](self.glca_neck(feats["glca"]))
            if "pwca" in feats:
                # PWCA features are a training-only view: keep them out of the
                # running statistics that inference uses.
                pwca = self.sa_neck(feats["pwca"], update_stats=False)
                out["pwca_logits"] = self.classifiers["sa"](pwca)
        return out
