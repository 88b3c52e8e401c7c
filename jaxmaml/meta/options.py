"""Options groups of :class:`~jaxmaml.meta.config.MetaConfig`: one small frozen dataclass per
learner family, written in YAML as a nested mapping (``meta: {finetune: {steps: 10}}``) and
overridden as ``--set meta.finetune.steps=10``."""

from __future__ import annotations

import dataclasses

PARTS = ("top_k", "lora", "all", "head")
# Defaults, one constant each. Chosen on validation domains (held-out Debian sections and
# WordNet topic domains): benchmarks/results/finetune_sweep.md.
PART = "top_k"
TOP_K = 2
LORA_RANK = 8
STEPS = 20
LR = 5e-5
HEAD_LR = 1e-2
SCALE = 10.0
WEIGHT_DECAY = 0.0


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    """How test-time fine-tuning adapts to a task (frozen, hashable: compile-time constants).

    Attributes:
      part: what is trained besides the head: ``top_k``, ``lora``, ``all`` or ``head``
        (see the module docstring).
      top_k: encoder layers fine-tuned by ``top_k`` and ``lora`` (counted from the top).
      lora_rank: rank of the LoRA factors (``part='lora'``).
      steps: full-batch optimizer steps on the support set (0 = the cosine centroid).
      lr: AdamW learning rate of the encoder part (or its LoRA factors).
      head_lr: AdamW learning rate of the cosine head's kernel.
      scale: the cosine logit scale (1 / temperature).
      weight_decay: AdamW decoupled weight decay of the encoder part (the cosine head is
        scale-invariant, so it is not decayed).
      seed: draws the LoRA ``A`` factors (the only random numbers).
    """

    part: str = PART
    top_k: int = TOP_K
    lora_rank: int = LORA_RANK
    steps: int = STEPS
    lr: float = LR
    head_lr: float = HEAD_LR
    scale: float = SCALE
    weight_decay: float = WEIGHT_DECAY
    seed: int = 0

    def __post_init__(self):
        if self.part not in PARTS:
            raise ValueError(f"finetune part={self.part!r} is not one of {', '.join(PARTS)}.")
        if self.top_k < 1:
            raise ValueError(f"finetune top_k={self.top_k} must be >= 1 (layers from the top).")
        if self.lora_rank < 1:
            raise ValueError(f"finetune lora_rank={self.lora_rank} must be >= 1.")
        if self.steps < 0:
            raise ValueError(f"finetune steps={self.steps} must be >= 0 (0 = the centroid).")
        if self.lr < 0 or self.head_lr < 0:
            raise ValueError(f"finetune lr={self.lr} and head_lr={self.head_lr} must be >= 0.")
        if self.scale <= 0:
            raise ValueError(f"finetune scale={self.scale} must be > 0 (1/temperature).")
        if self.weight_decay < 0:
            raise ValueError(f"finetune weight_decay={self.weight_decay} must be >= 0.")

    def adapt_filter(self, num_layers: int, outer_frozen_layers: int) -> dict:
        """The :class:`~jaxmaml.meta.config.MetaConfig` adapt filter (``adapt``,
        ``adapt_top_k``) that selects the part this fine-tuning trains, in a model of
        ``num_layers`` layers whose bottom ``outer_frozen_layers`` are never trained."""
        if self.part == "head":
            return dict(adapt="head")
        if self.part == "all" and not outer_frozen_layers:
            return dict(adapt="all")
        return dict(adapt="top_k_layers",
                    adapt_top_k=num_layers if self.part == "all" else self.top_k)

    def replace(self, **changes) -> "FinetuneOptions":
        return dataclasses.replace(self, **changes)
