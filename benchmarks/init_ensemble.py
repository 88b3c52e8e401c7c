"""Both inits at once: the recommended setting from the original and from the meta-learned
encoder, their transductive class probabilities averaged (validation).

Each query's class probabilities under the recommended setting (fine-tuned + class names +
soft k-means over the batch: ``softmax(scale * cos(q, p_c))`` with the refined prototypes
``p_c``) are computed once from each init and averaged; the prediction is the argmax. It
costs two fine-tunings per task.

To pair in one run on the same episodes, ask for ``finetune_names_trans
meta_learned_finetune_names_trans finetune_names meta_learned_finetune_names``: the two
``_trans`` rows are the product's (each init alone) and both ``finetune_names`` rows hold
the ensemble's accuracy (the inductive ``*_names`` rows are not scored). Arguments after
``--`` are :mod:`finetune_table`'s (``table`` mode):

    python benchmarks/init_ensemble.py -- table --setup V=runs/quickstart:data=appstream \\
        --seq-len 64 --episodes 30 --finetune-episodes 30 --batches balanced \\
        --methods finetune_names_trans meta_learned_finetune_names_trans finetune_names \\
        meta_learned_finetune_names --out /tmp/ens
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

PAIR = ("finetune_names", "meta_learned_finetune_names")


def prob_task_scores():
    """A stand-in for ``finetune_eval.task_scores`` whose ``plain`` is the ``[m, way]`` class
    probabilities of the product's transductive refinement and ``trans`` its accuracy (both
    from one refinement)."""
    import jax
    import jax.numpy as jnp

    from jaxmaml.meta import transductive

    def scores(params, support, query, opts, cfg, need, s_bottom=None, q_bottom=None):
        logits = transductive.finetune_transductive_predict(
            params, support, query, opts, cfg, support_bottom=s_bottom, bottom=q_bottom)
        return {"plain": jax.nn.softmax(logits, -1),
                "trans": (jnp.argmax(logits, -1) == query.labels).mean()}

    return scores


def ensemble_score(score):
    """``finetune_eval.score`` whose two ``*_finetune_names`` entries (probabilities, from
    :func:`prob_task_scores`) become the accuracy ``[T]`` of their average."""

    def wrapped(prep, methods, index, way):
        out = score(prep, methods, index, way)
        if all(m in out for m in PAIR):
            probs = out[PAIR[0]] + out[PAIR[1]]  # [T, m, way]
            acc = (probs.argmax(-1) == index.query_labels).mean(-1)
            out.update({m: acc.astype(np.float32) for m in PAIR})
        return out

    return wrapped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="-- finetune_table.py arguments")
    args = p.parse_args(argv)

    import finetune_table

    from jaxmaml.run import finetune_eval

    finetune_eval.task_scores = prob_task_scores()
    finetune_eval.score = ensemble_score(finetune_eval.score)
    return finetune_table.wrapped_main("init_ensemble.py", argv, args.rest)


if __name__ == "__main__":
    sys.exit(main())
