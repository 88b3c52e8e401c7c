"""Learner factories: a function of hyperparameters returning a :class:`Learner`.

A :class:`Learner` is what meta-training, ``jaxmaml eval``, :class:`~jaxmaml.FewShotClassifier`
and ``jaxmaml predict`` all run for one task:

- ``adapt(meta_params, support, way) -> task_params``: a labelled support set (unbatched
  :class:`~jaxmaml.types.Examples`, ``[n_s, seq_len]``, labels in ``[0, way)``, weight 0 on
  padding rows) turned into the task's parameters: the inner-loop-adapted encoder and head
  (MAML family), the class prototypes (ProtoNet, Relation Networks) or the embedded
  support set (Matching Networks);
- ``predict(task_params, examples) -> logits [n, way]``; class probabilities are
  ``softmax(logits)`` for every learner.

The meta-training loss of each learner is the query loss of ``predict(adapt(support),
query)`` (the MAML family trains through :func:`jaxmaml.meta.maml.adapt_task`, which
``adapt`` wraps, so that its embedding-row view and cached frozen bottom also serve
training). Settings a learner implies (``anil`` adapts the head only, ``fomaml`` is first
order, ...) are resolved here, once; an explicit conflicting setting raises ``ValueError``.

Example (a randomly initialized tiny encoder; a real one comes from a run or an export)::

    >>> import jax, jax.numpy as jnp, jaxmaml
    >>> from jaxmaml.types import Examples
    >>> learner = jaxmaml.learners.protomaml(inner_lr=0.1, num_inner_steps=2, adapt="head")
    >>> meta_params = learner.init(jaxmaml.init_params(learner.cfg.model, jax.random.key(0)),
    ...                            jax.random.key(1))
    >>> ids = jnp.array([[2, 5, 3], [2, 6, 3], [2, 7, 3]])
    >>> support = Examples(ids, jnp.ones_like(ids), jnp.array([0, 1, 1]), jnp.ones(3))
    >>> task = learner.adapt(meta_params, support, way=2)
    >>> learner.predict(task, support).shape
    (3, 2)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax

from jaxmaml.meta.config import meta_config, MetaConfig
from jaxmaml.meta.options import FLAT_KEYS
from jaxmaml.meta.registry import get_learner, LEARNERS, resolve_config
from jaxmaml.models.bert import BertConfig
from jaxmaml.types import Examples

__all__ = ["Learner", "anil", "finetune", "fomaml", "from_config", "imaml", "maml",
           "mamlpp", "matchingnet", "metasgd", "protomaml", "protonet", "relationnet",
           "reptile"]


class Learner(NamedTuple):
    """One learner, bound to its resolved :class:`MetaConfig` (pure, jittable functions).

    Attributes:
      cfg: the resolved config (``cfg.way`` is the default number of classes).
      adapt: ``(meta_params, support, way=cfg.way) -> task_params`` (``way`` static).
      predict: ``(task_params, examples) -> logits [n, way]``.
      init: ``(encoder, key) -> meta_params``: ``{"encoder", **learner extras}``.
      task_loss: ``(meta_params, episode) -> (loss, metrics)`` for one task.
    """

    cfg: MetaConfig
    adapt: Callable[..., dict]
    predict: Callable[[dict, Examples], jax.Array]
    init: Callable[[Any, jax.Array], dict]
    task_loss: Callable[..., tuple[jax.Array, dict]]

    @property
    def name(self) -> str:
        return self.cfg.algorithm


def from_config(cfg: MetaConfig, explicit: dict[str, Any] | None = None) -> Learner:
    """The :class:`Learner` of ``cfg.algorithm`` (implied settings resolved)."""
    cfg = resolve_config(cfg, explicit)
    learner = get_learner(cfg.algorithm)

    def adapt(meta_params: dict, support: Examples, way: int | None = None) -> dict:
        return learner.adapt(meta_params, support, cfg.replace(way=way or cfg.way))

    def predict(task_params: dict, examples: Examples) -> jax.Array:
        return learner.predict(task_params, examples, cfg)

    def init(encoder: Any, key: jax.Array) -> dict:
        return {"encoder": encoder, **learner.init_extras(encoder, cfg, key)}

    def task_loss(meta_params: dict, episode):
        return learner.task_loss(meta_params, episode, cfg)

    return Learner(cfg, adapt, predict, init, task_loss)


def _factory(algorithm: str, doc: str) -> Callable[..., Learner]:
    def make(*, model: BertConfig | None = None, **settings: Any) -> Learner:
        # MetaConfig fields, or their flat names of earlier versions (distance="cosine")
        unknown = set(settings) - {f.name for f in dataclasses.fields(MetaConfig)} - set(FLAT_KEYS)
        if unknown:
            raise TypeError(f"{algorithm}() got unknown settings {sorted(unknown)}; use "
                            "MetaConfig field names (inner_lr, num_inner_steps, adapt, ...).")
        fixed = {"algorithm": algorithm, **({"model": model} if model is not None else {})}
        return from_config(meta_config(settings, **fixed), explicit=settings)

    make.__name__ = make.__qualname__ = algorithm
    make.__doc__ = doc + """

    Args:
      model: the encoder's :class:`~jaxmaml.models.bert.BertConfig` (default: tiny).
      **settings: any other :class:`~jaxmaml.meta.config.MetaConfig` field (``way``,
        ``inner_lr``, ``num_inner_steps``, ``adapt``, ``pooling``, ...).

    Returns:
      A :class:`Learner`.
    """
    return make


maml = _factory("maml", """MAML (Finn et al. 2017), second order.

    ``adapt``: head ``W = 0, b = 0``, then ``num_inner_steps`` steps of
    ``p <- p - inner_lr * grad_p L_support(p)`` on the leaves ``adapt`` selects (``all``,
    ``head``, ``top_k_layers``, ``regex``); ``predict``: ``logits = pool(encoder_p(x)) W + b``.
    Meta-gradient through the inner loop (Hessian-vector products).""")
fomaml = _factory("fomaml", """First-order MAML: :func:`maml` with ``first_order=True``
    (the inner gradients are constants for the meta-gradient).""")
anil = _factory("anil", """ANIL (Raghu et al. 2020): :func:`maml` adapting the task head
    only (``adapt='head'``); the encoder's features are computed once per task.""")
metasgd = _factory("metasgd", """Meta-SGD (Li et al. 2017): :func:`maml` with a learned
    inner learning rate per parameter, ``p <- p - exp(log_lr) * grad_p L_support(p)``
    (elementwise; the head's rates are shared across classes).""")
mamlpp = _factory("mamlpp", """MAML++ (Antoniou et al. 2019): :func:`maml` with learned
    per-leaf, per-step rates ``p <- p - lr_{leaf,i} grad L_support`` (LSLR); multi-step loss
    and order annealing apply to meta-training only.""")
reptile = _factory("reptile", """Reptile (Nichol et al. 2018): adapt as first-order
    :func:`maml`; meta-training moves the init towards the adapted params,
    ``phi <- phi + eps * mean_t(phi_t - phi)``.""")
imaml = _factory("imaml", """Implicit MAML (Rajeswaran et al. 2019): the inner loop runs
    ``num_inner_steps`` SGD steps on ``L_support(p) + imaml_lambda/2 |p - p_meta|^2``;
    meta-training takes the implicit meta-gradient ``(I + H/imaml_lambda)^-1 grad L_query``
    by ``cg_steps`` conjugate-gradient steps (no backprop through the inner loop).""")
protomaml = _factory("protomaml", """Proto-MAML (Triantafillou et al. 2020): :func:`maml`
    from the prototype head ``W = 2 c^T, b = -|c|^2`` (``c_k`` the support class means), so
    step 0 is the ProtoNet classifier ``-|x - c_k|^2 + |x|^2``.""")
finetune = _factory("finetune", """Meta-learning for test-time fine-tuning: first-order MAML
    whose inner loop is the fine-tuning a user runs (``finetune``:
    :class:`~jaxmaml.meta.options.FinetuneOptions`: AdamW on the top layers, their LoRA
    factors or all of them, and a cosine head started at the normalized prototypes), with
    the prototypes' gradient kept; with ``finetune.steps = 0`` it is a cosine ProtoNet on
    normalized mean-pooled features.""")
protonet = _factory("protonet", """Prototypical Networks (Snell et al. 2017).

    ``adapt``: the prototypes ``c_k = mean_{i: y_i = k} f(x_i)``; ``predict``:
    ``logits_k = -|f(x) - c_k|^2`` (or ``cosine_scale * cos(f(x), c_k)`` with
    ``protonet.distance='cosine'``). No inner loop.""")
matchingnet = _factory("matchingnet", """Matching Networks (Vinyals et al. 2016).

    ``adapt``: the embedded support set ``g(x_i)`` (with ``matching.fce=True`` after one
    self-attention layer); ``predict``: ``log p(y=k|x) = log sum_{i: y_i = k}
    softmax_i(cosine_scale * cos(f(x), g(x_i)))``.""")
relationnet = _factory("relationnet", """Relation Networks (Sung et al. 2018).

    ``adapt``: the prototypes ``c_k``; ``predict``: the pre-sigmoid relation scores
    ``MLP([f(x), c_k, |f(x) - c_k|, f(x) * c_k])`` (relation score = sigmoid).""")

assert set(__all__) - {"Learner", "from_config"} == set(LEARNERS)
