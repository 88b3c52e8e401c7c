"""Centring the features before the cosine classifier and soft k-means (validation; not kept).

Cosine classifiers of sentence embeddings are known to gain from centring (SimpleShot's
CL2N, Wang et al. 2019; BERT-whitening): subtract a mean feature, then L2-normalize. Here
the mean is the episode's own, so nothing is fitted:

- ``--center support``: the weighted mean of the labelled rows (support + class names);
- ``--center episode``: the mean of the support and the queries (the batch being labelled);
- ``--center none``: the product as it is (the reference for pairing).

The frozen ``cosine_centroid_*`` methods of ``jaxmaml eval`` then score centred features
(the plain and the transductive readout). For fine-tuning, ``--finetune-readout`` makes
``finetune_names`` score the support-centred soft k-means over the fine-tuned features
(prototypes started at the centred head kernel) while ``finetune_names_trans`` keeps the
product's refinement, both from the same fine-tuning (paired in one run). Arguments after
these are :mod:`finetune_table`'s (``table`` mode, one ``--out``):

    python benchmarks/centering.py --center support -- table --setup D=runs/quickstart:debian \\
        --episodes 600 --batches balanced dirichlet --methods cosine_centroid_names_trans \\
        --out /tmp/center_support
    python benchmarks/centering.py --finetune-readout -- table --setup D=runs/quickstart:debian \\
        --episodes 40 --finetune-episodes 40 --batches balanced dirichlet \\
        --methods finetune_names finetune_names_trans --out /tmp/center_ft
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def centred_centroid_acc(centroid_acc, center: str):
    """``centroid_acc`` (:func:`jaxmaml.run.finetune_eval._centroid_acc`) on features centred
    per task (``--center``) and L2-normalized again."""
    import jax.numpy as jnp

    from jaxmaml.meta.encoding import l2_normalize

    def acc_fn(s_feats, s_labels, s_weights, q_feats, q_labels, way: int) -> dict:
        if center != "none":  # s_feats [T, n, H], s_weights [T, n], q_feats [T, m, H]
            mu = ((s_weights[..., None] * s_feats).sum(1) / s_weights.sum(1)[:, None]
                  if center == "support" else jnp.concatenate([s_feats, q_feats], 1).mean(1))
            s_feats = l2_normalize(s_feats - mu[:, None])
            q_feats = l2_normalize(q_feats - mu[:, None])
        return centroid_acc(s_feats, s_labels, s_weights, q_feats, q_labels, way=way)

    return acc_fn


def centred_task_scores(task_scores):
    """``task_scores`` whose ``"plain"`` is the support-centred refinement (module docstring)."""
    import jax.numpy as jnp

    from jaxmaml.meta import finetune, transductive
    from jaxmaml.meta.encoding import l2_normalize

    def scores(params, support, query, opts, cfg, need, s_bottom=None, q_bottom=None):
        out = task_scores(params, support, query, opts, cfg, ("trans",), s_bottom, q_bottom)
        s = finetune.finetune_features(params, support, opts, cfg, s_bottom)
        q = finetune.finetune_features(params, query, opts, cfg, q_bottom)
        w = support.weights
        mu = (w[:, None] * s).sum(0) / w.sum()
        sc, qc = l2_normalize(s - mu), l2_normalize(q - mu)
        init = l2_normalize(l2_normalize(params["head"]["kernel"].T) - mu)
        protos = transductive.soft_kmeans(init, sc, support.labels, w, qc, query.weights)
        out["plain"] = (jnp.argmax(qc @ protos.T, -1) == query.labels).mean()
        return out

    return scores


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--center", choices=("none", "support", "episode"), default="none")
    p.add_argument("--finetune-readout", action="store_true")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="-- finetune_table.py arguments")
    args = p.parse_args(argv)

    import finetune_table

    from jaxmaml.run import finetune_eval

    finetune_eval._centroid_acc = centred_centroid_acc(finetune_eval._centroid_acc,
                                                       args.center)
    if args.finetune_readout:
        finetune_eval.task_scores = centred_task_scores(finetune_eval.task_scores)
    return finetune_table.wrapped_main("centering.py", argv, args.rest)


if __name__ == "__main__":
    sys.exit(main())
