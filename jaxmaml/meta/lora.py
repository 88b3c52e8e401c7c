"""Meta-learned low-rank updates (LoRA, Hu et al. 2022), merged into plain BERT weights.

With ``meta.lora_rank = r > 0`` the outer loop leaves every encoder leaf at its pretrained
value and meta-learns, for each weight matrix (``kernel``) of the layers it would train
(the encoder layers above ``meta.outer_frozen_layers``; not the pooler), two factors
``A [in, r]`` (``N(0, 1/in)``) and ``B [r, out]`` (zeros, so step 0 is the pretrained
encoder). The learners see the merged encoder ``W + A @ B``; the gradient reaches only the
factors. They live in ``meta_params["lora"]``, keyed by the kernel's path in the encoder
with ``/`` written ``__`` (checkpoint-safe keys).

Wherever a run is loaded (:func:`jaxmaml.run.load.restore_meta_params`: eval, export,
predict, ``FewShotClassifier``) the factors are merged and dropped, so a run's model is a
plain BERT, and ``train.wise_alpha`` scales the merged update (``W + alpha A @ B``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.filters import is_outer_frozen
from jaxmaml.tree import path_str

SEP = "__"  # "/" of a kernel's path, in the keys of meta_params["lora"]


def lora_targets(encoder: Any, cfg: MetaConfig) -> dict[str, tuple[int, int]]:
    """``{path in the encoder: (in, out)}`` of the 2-D kernels of the encoder layers that
    the outer loop trains (``outer_frozen_layers`` and up)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(encoder)[0]:
        p = path_str(path)
        if (p.startswith("encoder/layer/") and p.endswith("kernel") and len(leaf.shape) == 2
                and not is_outer_frozen(f"encoder/{p}", cfg)):
            out[p] = tuple(leaf.shape)
    return out


def init_lora(encoder: Any, cfg: MetaConfig, key: jax.Array) -> dict[str, dict]:
    """``{key: {"a": [in, r] ~ N(0, 1/in), "b": [r, out] = 0}}`` for every target, target
    ``i`` (in sorted path order) drawn from ``fold_in(key, i)``."""
    lora = {}
    for i, (p, (n_in, n_out)) in enumerate(sorted(lora_targets(encoder, cfg).items())):
        a = jax.random.normal(jax.random.fold_in(key, i), (n_in, cfg.lora_rank)) / jnp.sqrt(n_in)
        lora[p.replace("/", SEP)] = {"a": a, "b": jnp.zeros((cfg.lora_rank, n_out))}
    return lora


def merge(encoder: Any, lora: dict[str, dict], alpha: float = 1.0,
          stop_encoder_grad: bool = False) -> Any:
    """The plain-BERT encoder ``W + alpha A @ B`` at every target (in ``W``'s dtype).
    ``stop_encoder_grad``: no gradient to ``W`` (training: only the factors learn)."""
    deltas = {k.replace(SEP, "/"): v for k, v in lora.items()}

    def leaf(path, w):
        w = jax.lax.stop_gradient(w) if stop_encoder_grad else w
        d = deltas.get(path_str(path))
        return w if d is None else (w + alpha * (d["a"] @ d["b"])).astype(w.dtype)

    return jax.tree_util.tree_map_with_path(leaf, encoder)


def merged_meta_params(meta_params: dict, training: bool = False) -> dict:
    """``meta_params`` with the factors merged into ``"encoder"`` and ``"lora"`` dropped
    (unchanged without ``"lora"``). ``training``: the gradient reaches only the factors."""
    if "lora" not in meta_params:
        return meta_params
    rest = {k: v for k, v in meta_params.items() if k != "lora"}
    return {**rest, "encoder": merge(meta_params["encoder"], meta_params["lora"],
                                     stop_encoder_grad=training)}
