"""Static configuration of the meta-learner and the outer optimizer.

Frozen and hashable: a :class:`MetaConfig` is closed over by the jitted meta-step, so every
field is a compile-time constant (shapes, step counts, algorithm choice).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from jaxmaml.meta.options import (FinetuneOptions, group_flat_keys, ImamlOptions, MamlppOptions,
                                  MatchingOptions, ProtoNetOptions, RelationOptions,
                                  ReptileOptions)
from jaxmaml.models.bert import BertConfig

ADAPT_CHOICES = ("all", "head", "top_k_layers", "regex")
REMAT_CHOICES = ("none", "full", "dots_saveable")
SECOND_ORDER_CHOICES = ("hvp", "linearize", "autodiff")
POOLING_CHOICES = ("cls", "mean")
HEAD_INIT_CHOICES = ("zeros", "proto")


# Settings an algorithm name implies, applied when a MetaConfig is built (once: every call
# site sees the resolved values). Metric learners have no inner loop; ``adapt="head"`` marks
# the whole encoder as inner-frozen so evaluation computes every example's features once.
_METRIC = dict(adapt="head", num_inner_steps=0)
# Learners that supply their own meta-gradient (Algorithm.meta_grad) instead of the gradient
# of the mean task loss: what wraps that loss (meta.lora_rank) does not apply to them.
OWN_META_GRAD = ("reptile", "mamlpp", "imaml")
IMPLIED: dict[str, dict[str, Any]] = {
    "fomaml": dict(first_order=True),
    "anil": dict(adapt="head"),
    "reptile": dict(first_order=True),
    "protomaml": dict(head_init="proto"),
    "finetune": dict(first_order=True, pooling="mean"),
    "protonet": _METRIC,
    "matchingnet": _METRIC,
    "relationnet": _METRIC,
}
# The implied settings that define an algorithm: setting them otherwise is a conflict (the
# metric learners' only mark their missing inner loop, so any value there is just unused).
_DEFINING_HINT = {
    ("anil", "adapt"): "ANIL adapts the head only; for more layers use meta.algorithm: maml "
                       "with meta.adapt: top_k_layers",
    ("fomaml", "first_order"): "for second-order MAML use meta.algorithm: maml",
    ("reptile", "first_order"): "Reptile never differentiates through the inner loop",
    ("protomaml", "head_init"): "for a zero head init use meta.algorithm: maml",
    ("finetune", "first_order"): "its inner loop is the AdamW fine-tuning a user runs; its "
                                 "meta-gradient is first order",
}


def check_implied(algorithm: str, explicit: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` when a setting the user gave (``explicit``: meta field -> value)
    contradicts what ``algorithm`` means, e.g. ``anil`` with ``adapt: top_k_layers``."""
    for field, value in IMPLIED.get(algorithm, {}).items():
        hint = _DEFINING_HINT.get((algorithm, field))
        if hint and field in explicit and explicit[field] != value:
            raise ValueError(
                f"meta.algorithm={algorithm!r} implies meta.{field}={value!r} but the config "
                f"sets meta.{field}={explicit[field]!r}: remove meta.{field} ({hint}).")


def implied_settings(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that the algorithm of a :class:`MetaConfig` built from the keyword
    arguments ``fields`` implies (:data:`IMPLIED`; for ``finetune`` also the adapt filter of
    its fine-tuned part)."""
    defaults = {f.name: f.default for f in dataclasses.fields(MetaConfig)}
    get = lambda name: fields.get(name, defaults[name])  # noqa: E731
    algorithm = get("algorithm")
    out = dict(IMPLIED.get(algorithm, {}))
    if algorithm == "finetune":  # its inner loop trains the fine-tuned part
        out.update(get("finetune").adapt_filter(get("model").num_hidden_layers,
                                                get("outer_frozen_layers"), "meta.finetune"))
    return out


class _Implying(type):
    """Builds a :class:`MetaConfig` with the settings its algorithm implies already in its
    arguments: no field is rewritten after construction, and ``dataclasses.replace`` (which
    constructs anew) resolves them the same way."""

    def __call__(cls, **fields):
        return super().__call__(**{**fields, **implied_settings(fields)})


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetaConfig(metaclass=_Implying):
    """How one task is adapted and scored.

    The settings ``algorithm`` implies (:data:`IMPLIED`: ``fomaml``/``reptile`` are first
    order, ``anil`` adapts the head, ``protomaml`` uses the prototype head, metric learners
    have no inner loop) are part of the arguments it is constructed with
    (:func:`implied_settings`), whatever was passed for them.

    Attributes:
      model: the encoder's :class:`BertConfig`.
      algorithm: learner name in :data:`jaxmaml.meta.registry.LEARNERS`.
      way: classes per task (size of the task head).
      num_inner_steps: inner SGD steps on the support set (0 = no adaptation).
      inner_lr: inner-loop step size alpha.
      first_order: stop gradients through inner gradients (FOMAML).
      adapt: which leaves the inner loop updates: ``all``, ``head`` (ANIL),
        ``top_k_layers`` (last ``adapt_top_k`` encoder layers + head) or ``regex``
        (param paths such as ``encoder/encoder/layer/5/.*`` matching ``adapt_regex``; the
        head is always adapted).
      meta_learn_frozen: whether leaves frozen in the inner loop still receive
        meta-gradients in the outer loop (False: they stay at their initial values).
      outer_frozen_layers: the embeddings and this many bottom encoder layers are never
        trained (neither loop), so their output can be computed once per dataset and fed
        as ``Examples.bottom`` (0 = train everything). Makes meta-training a large encoder
        on a CPU affordable: only the top layers run per step.
      outer_regex: meta-learn only the encoder leaves whose path in ``meta_params``
        fully matches this regex (e.g. BitFit-style LayerNorm and biases of the top layers:
        ``encoder/encoder/layer/[345]/.*(LayerNorm/.*|bias)``); every other encoder leaf
        stays bit-identical to its initial (pretrained) value. Learner extras and the inner
        loop are unaffected. Empty = no filter.
      lora_rank: ``r > 0`` meta-learns low-rank updates ``W + A @ B`` (rank ``r``) of the
        weight matrices of the trained layers instead of the encoder's leaves, which stay
        pretrained; merged into plain BERT weights wherever the run is loaded
        (:mod:`jaxmaml.meta.lora`). 0 = off. Not with ``outer_regex`` nor a learner with
        its own meta-gradient (``reptile``, ``mamlpp``, ``imaml``).
      embedding_rows: when the inner loop adapts the word embeddings, adapt only the rows
        of the task's tokens (gathered once per task; same result as adapting the whole
        table, see :func:`jaxmaml.meta.maml.embedding_row_view`). False: carry the full
        ``[vocab, H]`` table through the inner loop.
      task_chunk: process the meta-batch's tasks this many at a time (a ``lax.scan``
        accumulating gradients) instead of all at once (``vmap``); 0 = all at once. Same
        gradient and FLOPs, the memory of ``task_chunk`` tasks: the answer to second-order
        MAML running out of memory. Must divide ``train.tasks`` (and, sharded, be a
        multiple of the data axis so every device keeps working).
      second_order: how second-order meta-gradients differentiate the inner steps:
        ``hvp`` (default) gives each step the closed-form VJP ``v - H (lr v)``, one
        forward-over-reverse Hessian-vector product that recomputes the step's gradient
        (keeps one step's working set; see :mod:`jaxmaml.meta.hvp`); ``linearize``: the
        same closed-form VJP, the step's gradient linearized in the forward pass and its
        linearization (the dense matmul outputs) kept for the backward pass (no
        recompute: ~3/4 of ``hvp``'s FLOPs, memory that grows with the number of inner
        steps); ``autodiff`` lets
        ``jax.grad`` transpose the inner gradients (reverse-over-reverse: keeps every step's
        forward and backward activations unless ``remat``). Same gradient.
      remat: with ``second_order='autodiff'``, ``jax.checkpoint`` around each inner step:
        ``none``, ``full`` or ``dots_saveable`` (keep matmul outputs, recompute the rest).
        ``hvp`` already recomputes instead of storing, so it takes ``none``.
      pooling: ``cls`` or ``mean`` (mask-weighted) sentence feature for the head.
      head_init: ``zeros`` or ``proto`` (Proto-MAML: W = 2c, b = -|c|^2 from support
        prototypes c).
      cosine_scale: multiplies cosine similarities before the softmax (ProtoNet with
        ``protonet.distance='cosine'`` and Matching Networks).
      protonet, matching, relation, reptile, imaml, mamlpp: the options of one learner
        family each (:mod:`jaxmaml.meta.options`: YAML ``meta: {imaml: {lam: 0.5}}``,
        ``--set meta.imaml.lam=0.5``), unused by the other learners.
      finetune: the test-time fine-tuning of ``algorithm: finetune`` (its inner loop; the
        adapt filter is the fine-tuned part) and of ``FewShotClassifier(adapt="finetune")``
        on a run: :class:`~jaxmaml.meta.options.FinetuneOptions`.
    """

    model: BertConfig = BertConfig.tiny()
    algorithm: str = "maml"
    way: int = 5
    num_inner_steps: int = 5
    inner_lr: float = 0.01
    first_order: bool = False
    adapt: str = "all"
    adapt_top_k: int = 1
    adapt_regex: str = ""
    meta_learn_frozen: bool = True
    outer_frozen_layers: int = 0
    outer_regex: str = ""
    lora_rank: int = 0
    embedding_rows: bool = True
    task_chunk: int = 0
    second_order: str = "hvp"
    remat: str = "none"
    pooling: str = "cls"
    head_init: str = "zeros"
    cosine_scale: float = 10.0
    protonet: ProtoNetOptions = ProtoNetOptions()
    matching: MatchingOptions = MatchingOptions()
    relation: RelationOptions = RelationOptions()
    reptile: ReptileOptions = ReptileOptions()
    imaml: ImamlOptions = ImamlOptions()
    mamlpp: MamlppOptions = MamlppOptions()
    finetune: FinetuneOptions = FinetuneOptions()

    def __post_init__(self):
        def check(name, value, choices):
            if value not in choices:
                raise ValueError(f"meta.{name}={value!r} is not one of {', '.join(choices)}.")

        check("adapt", self.adapt, ADAPT_CHOICES)
        check("remat", self.remat, REMAT_CHOICES)
        check("second_order", self.second_order, SECOND_ORDER_CHOICES)
        if self.remat != "none" and self.second_order != "autodiff" and not self.first_order:
            raise ValueError(
                f"meta.remat={self.remat!r} applies to meta.second_order='autodiff'. "
                f"'{self.second_order}' gives each inner step its own closed-form VJP "
                "(the default 'hvp' already recomputes instead of storing): set meta.remat: "
                "none, or meta.second_order: autodiff to keep remat.")
        check("pooling", self.pooling, POOLING_CHOICES)
        check("head_init", self.head_init, HEAD_INIT_CHOICES)
        if self.task_chunk < 0:
            raise ValueError(f"meta.task_chunk={self.task_chunk} must be >= 0.")
        for key in ("normalize_features", "transductive_iters"):
            if getattr(self.protonet, key) and self.algorithm != "protonet":
                raise ValueError(f"meta.protonet.{key} applies to meta.algorithm="
                                 f"'protonet', not {self.algorithm!r}; remove it.")
        if self.cosine_scale <= 0:
            raise ValueError(f"meta.cosine_scale={self.cosine_scale} must be > 0.")
        if self.way < 2:
            raise ValueError(f"meta.way={self.way}: a task needs at least 2 classes.")
        if self.num_inner_steps < 0:
            raise ValueError(f"meta.num_inner_steps={self.num_inner_steps} must be >= 0.")
        if self.adapt == "top_k_layers" and not 0 <= self.adapt_top_k <= self.model.num_hidden_layers:
            raise ValueError(f"meta.adapt_top_k={self.adapt_top_k} must be in "
                             f"[0, {self.model.num_hidden_layers}] for this model.")
        if not 0 <= self.outer_frozen_layers <= self.model.num_hidden_layers:
            raise ValueError(f"meta.outer_frozen_layers={self.outer_frozen_layers} must be in "
                             f"[0, {self.model.num_hidden_layers}] for this model.")
        if self.outer_frozen_layers and self.adapt in ("all", "regex"):
            raise ValueError("meta.outer_frozen_layers > 0 freezes the embeddings; use "
                             "meta.adapt='top_k_layers' or 'head' with it.")
        if self.outer_regex:
            try:
                re.compile(self.outer_regex)
            except re.error as e:
                raise ValueError(f"meta.outer_regex={self.outer_regex!r} is not a valid "
                                 f"regular expression: {e}") from e
        if self.lora_rank < 0:
            raise ValueError(f"meta.lora_rank={self.lora_rank} must be >= 0 (0 = off).")
        if self.lora_rank and self.outer_regex:
            raise ValueError("meta.lora_rank keeps every encoder leaf pretrained and learns "
                             "low-rank updates instead; remove meta.outer_regex.")
        if self.lora_rank and self.algorithm in OWN_META_GRAD:
            raise ValueError(f"meta.lora_rank needs a learner whose meta-gradient is the "
                             f"gradient of its loss, not {self.algorithm!r} (use one of the "
                             f"others, e.g. protonet or maml).")
        if self.adapt == "regex":
            if not self.adapt_regex:
                raise ValueError("meta.adapt='regex' needs meta.adapt_regex, e.g. "
                                 "'encoder/encoder/layer/5/.*'.")
            try:
                re.compile(self.adapt_regex)
            except re.error as e:
                raise ValueError(f"meta.adapt_regex={self.adapt_regex!r} is not a valid "
                                 f"regular expression: {e}") from e

    def replace(self, **changes) -> "MetaConfig":
        return dataclasses.replace(self, **changes)

    def for_inference(self) -> "MetaConfig":
        """This config with the meta-training-only objectives off
        (``protonet.transductive_iters``): what evaluation and meta-val score, the
        learner's own prediction from a support set."""
        if not self.protonet.transductive_iters:
            return self
        return self.replace(protonet=dataclasses.replace(self.protonet, transductive_iters=0))


# The options groups of a MetaConfig: field name -> its dataclass.
OPTION_GROUPS: dict[str, type] = {
    "protonet": ProtoNetOptions, "matching": MatchingOptions, "relation": RelationOptions,
    "reptile": ReptileOptions, "imaml": ImamlOptions, "mamlpp": MamlppOptions,
    "finetune": FinetuneOptions}


def meta_config(settings: Mapping[str, Any], **fixed) -> MetaConfig:
    """A :class:`MetaConfig` from plain settings (an export's ``jaxmaml.json`` ``meta``, a
    learner factory's keywords): options groups as mappings or dataclasses, and the flat keys
    of earlier versions (``imaml_lambda``, ``distance``, ...) read into their groups."""
    settings, _ = group_flat_keys(settings)
    return MetaConfig(**fixed, **{
        k: OPTION_GROUPS[k](**v) if k in OPTION_GROUPS and isinstance(v, Mapping) else v
        for k, v in settings.items()})


OPTIMIZERS = ("adamw", "adam", "sgd")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Outer (meta) optimizer: an Optax chain of clipping, the optimizer and a schedule.

    The schedule is linear warmup over ``warmup_steps`` to ``lr``, then cosine decay to
    ``lr * final_lr_fraction`` at ``decay_steps`` (0 = constant after warmup).
    ``pull_to_init`` (lambda >= 0) adds the gradient of ``lambda/2 |theta - theta_0|^2``
    over the encoder (``theta_0``: the pretrained weights the run started from) to the
    meta-gradient before clipping (L2-SP; :mod:`jaxmaml.meta.anchor`). 0 = off.
    """

    name: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    warmup_steps: int = 0
    decay_steps: int = 0
    final_lr_fraction: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    momentum: float = 0.0
    pull_to_init: float = 0.0

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optim.name={self.name!r} is not one of {', '.join(OPTIMIZERS)}.")
        if self.lr <= 0:
            raise ValueError(f"optim.lr={self.lr} must be > 0.")
        if self.pull_to_init < 0:
            raise ValueError(f"optim.pull_to_init={self.pull_to_init} must be >= 0 (0 = off).")
        if self.decay_steps and self.decay_steps <= self.warmup_steps:
            raise ValueError(f"optim.decay_steps={self.decay_steps} must exceed "
                             f"optim.warmup_steps={self.warmup_steps} (or be 0 for no decay).")
