"""Options groups of :class:`~jaxmaml.meta.config.MetaConfig`: one small frozen dataclass per
learner family, written in YAML as a nested mapping (``meta: {finetune: {steps: 10}}``) and
overridden as ``--set meta.finetune.steps=10``."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

PARTS = ("top_k", "lora", "all", "head")
# Defaults, one constant each. Chosen on validation domains (held-out Debian sections and
# WordNet topic domains): benchmarks/results/finetune_sweep.md.
PART = "top_k"
TOP_K = 2
LORA_RANK = 8
STEPS = 10  # 20 measured +0.22 ± 0.15 points at 1.9x the fitting time: kept at 10
LR = 5e-5
HEAD_LR = 1e-2
SCALE = 10.0
WEIGHT_DECAY = 0.0
PAIR_WEIGHT = 0.0


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
      pair_weight: weight of a SetFit-style pair loss added to the cross-entropy: over all
        pairs of support rows, the squared error between their features' cosine and 1 (same
        class) or 0 (other classes), positive and negative pairs weighted half each
        (:func:`jaxmaml.meta.finetune.pair_loss`); 0 = cross-entropy only.
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
    pair_weight: float = PAIR_WEIGHT
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
        if self.pair_weight < 0:
            raise ValueError(f"finetune pair_weight={self.pair_weight} must be >= 0 "
                             "(0 = cross-entropy only).")

    def adapt_filter(self, num_layers: int, outer_frozen_layers: int,
                     key: str = "finetune") -> dict:
        """The :class:`~jaxmaml.meta.config.MetaConfig` adapt filter (``adapt``,
        ``adapt_top_k``) that selects the part this fine-tuning trains, in a model of
        ``num_layers`` layers whose bottom ``outer_frozen_layers`` are never trained.

        Raises ``ValueError`` (naming the option as ``key``) when ``top_k`` exceeds the
        layers left trainable."""
        trainable = num_layers - outer_frozen_layers
        if self.part in ("top_k", "lora") and self.top_k > trainable:
            raise ValueError(f"{key}.top_k={self.top_k} exceeds the {trainable} trainable "
                             f"layers of this model ({num_layers} layers, "
                             f"{outer_frozen_layers} never trained); lower it.")
        if self.part == "head":
            return dict(adapt="head")
        if self.part == "all" and not outer_frozen_layers:
            return dict(adapt="all")
        return dict(adapt="top_k_layers",
                    adapt_top_k=num_layers if self.part == "all" else self.top_k)

    def replace(self, **changes) -> "FinetuneOptions":
        return dataclasses.replace(self, **changes)

    def replace_from_strings(self, pairs: Sequence[str]) -> "FinetuneOptions":
        """These options changed by ``KEY=VALUE`` strings (command-line flags), each value
        cast to its field's type. Raises ``ValueError`` naming the bad pair."""
        fields = {f.name: {"str": str, "int": int, "float": float}[str(f.type)]
                  for f in dataclasses.fields(self)}
        changes = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in fields:
                raise ValueError(f"--finetune {pair!r}: use KEY=VALUE with KEY one of "
                                 f"{', '.join(fields)}.")
            try:
                changes[key] = fields[key](value)
            except ValueError:
                raise ValueError(f"--finetune {pair!r}: {key} takes a "
                                 f"{fields[key].__name__}.") from None
        return self.replace(**changes)


DISTANCES = ("sqeuclidean", "cosine")


@dataclasses.dataclass(frozen=True)
class ProtoNetOptions:
    """Prototypical Networks (``meta.protonet``).

    Attributes:
      distance: ``sqeuclidean`` (Snell et al.) or ``cosine`` (``meta.cosine_scale`` times the
        cosine similarity).
      normalize_features: L2-normalize each pooled feature before it forms the class means
        (sentence-transformers' cosine centroid: with ``distance='cosine'`` the meta-learned
        classifier is then exactly ``meta_learned_centroid``); False: means of raw features.
      transductive_iters: meta-train for transductive prediction: each episode's prototypes
        are refined by this many soft k-means iterations over its queries
        (:func:`jaxmaml.meta.transductive.soft_kmeans`, the refinement of
        ``predict(..., transductive=True)``) before the query loss; 0 (default): off. Needs
        ``distance='cosine'``. A training objective only: the learner's prediction, and
        what evaluation and meta-val score, stay inductive.
    """

    distance: str = "sqeuclidean"
    normalize_features: bool = False
    transductive_iters: int = 0

    def __post_init__(self):
        if self.distance not in DISTANCES:
            raise ValueError(f"meta.protonet.distance={self.distance!r} is not one of "
                             f"{', '.join(DISTANCES)}.")
        if self.transductive_iters < 0:
            raise ValueError(f"meta.protonet.transductive_iters={self.transductive_iters} "
                             "must be >= 0 (0 = off).")
        if self.transductive_iters and self.distance != "cosine":
            raise ValueError("meta.protonet.transductive_iters refines cosine prototypes; "
                             "set meta.protonet.distance: cosine.")


@dataclasses.dataclass(frozen=True)
class MatchingOptions:
    """Matching Networks (``meta.matching``): ``fce`` turns on the full-context embeddings
    (support self-attention + query attention-LSTM), ``fce_steps`` is the attention-LSTM's
    read steps."""

    fce: bool = False
    fce_steps: int = 2

    def __post_init__(self):
        if self.fce_steps < 1:
            raise ValueError(f"meta.matching.fce_steps={self.fce_steps} must be >= 1.")


@dataclasses.dataclass(frozen=True)
class RelationOptions:
    """Relation Networks (``meta.relation``): ``hidden`` is the relation MLP's width."""

    hidden: int = 64

    def __post_init__(self):
        if self.hidden < 1:
            raise ValueError(f"meta.relation.hidden={self.hidden} must be >= 1.")


@dataclasses.dataclass(frozen=True)
class ReptileOptions:
    """Reptile (``meta.reptile``): ``all_data`` trains the inner loop on the support and query
    examples together (all of a meta-training task's data, as in Nichol et al. 2018); False:
    support only. Evaluation always adapts on the support set."""

    all_data: bool = True


@dataclasses.dataclass(frozen=True)
class ImamlOptions:
    """Implicit MAML (``meta.imaml``).

    Attributes:
      lam: the proximal strength: the inner loop minimizes
        ``L_support + lam/2 |phi - theta|^2`` (:mod:`jaxmaml.meta.imaml`).
      cg_steps: conjugate-gradient steps for ``(I + H/lam)^-1 v``.
      cg_damping: solve ``((1 + cg_damping) I + H/lam) x = v`` (> 0 keeps the system
        positive definite where the support loss is not convex).
    """

    lam: float = 1.0
    cg_steps: int = 5
    cg_damping: float = 0.0

    def __post_init__(self):
        if self.lam <= 0:
            raise ValueError(f"meta.imaml.lam={self.lam} must be > 0 (the proximal term's "
                             "strength; 0.5-2 is typical).")
        if self.cg_steps < 1 or self.cg_damping < 0:
            raise ValueError(f"meta.imaml.cg_steps={self.cg_steps} must be >= 1 and "
                             f"meta.imaml.cg_damping={self.cg_damping} >= 0.")


@dataclasses.dataclass(frozen=True)
class MamlppOptions:
    """MAML++ (``meta.mamlpp``).

    Attributes:
      msl_steps: multi-step loss: the query losses after every inner step are weighted,
        annealed towards the last step over the first ``msl_steps`` meta-steps (0 = last step
        only).
      first_order_steps: derivative-order annealing: first order for the first
        ``first_order_steps`` meta-steps, second order after (0 = second order throughout).
    """

    msl_steps: int = 0
    first_order_steps: int = 0

    def __post_init__(self):
        for name in ("msl_steps", "first_order_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"meta.mamlpp.{name}={getattr(self, name)} must be >= 0.")


# The flat ``meta`` keys of earlier versions -> (options group, key): YAML configs, saved runs
# and exports that use them keep loading (see :func:`group_flat_keys`).
FLAT_KEYS: dict[str, tuple[str, str]] = {
    "distance": ("protonet", "distance"),
    "normalize_features": ("protonet", "normalize_features"),
    "fce": ("matching", "fce"),
    "fce_steps": ("matching", "fce_steps"),
    "relation_hidden": ("relation", "hidden"),
    "reptile_all_data": ("reptile", "all_data"),
    "imaml_lambda": ("imaml", "lam"),
    "cg_steps": ("imaml", "cg_steps"),
    "cg_damping": ("imaml", "cg_damping"),
    "msl_steps": ("mamlpp", "msl_steps"),
    "first_order_steps": ("mamlpp", "first_order_steps"),
}


def group_flat_keys(meta: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``meta`` (a raw ``meta`` mapping) with its flat keys of earlier versions moved into
    their options groups, and the old keys it had (``[]``: nothing to say). A key given both
    ways keeps the group's value."""
    out, moved = dict(meta), []
    for old, (group, key) in FLAT_KEYS.items():
        if old not in out:
            continue
        value = out.pop(old)
        moved.append(old)
        body = out.get(group)
        body = dict(body) if isinstance(body, Mapping) else {}
        body.setdefault(key, value)
        out[group] = body
    return out, moved


def moved_note(moved: list[str]) -> str:
    """The one-line deprecation note for the flat keys ``moved``."""
    pairs = ", ".join(f"meta.{k} -> meta.{'.'.join(FLAT_KEYS[k])}" for k in moved)
    return (f"deprecated flat meta keys (still read; write them in their options group): "
            f"{pairs}.")
