"""Laplacian smoothing of the transductive assignments over a kNN graph (validation;
not kept).

LaplacianShot (Ziko et al. 2020): after the prototypes, each query's class assignment is
pulled towards its nearest neighbours' in the batch being labelled. With ``l_q`` the
cosine logits of query ``q`` against the soft k-means prototypes (the product's refinement)
and ``W`` the kNN graph of the queries (``W_qp = 1`` when ``p`` is one of the ``--knn``
most cosine-similar other queries of ``q``; every query of ``jaxmaml eval``'s episodes is a
real text, none padding), ``--iters`` bound updates

    y_q <- softmax(l_q + lambda * sum_p W_qp y_p)

start from ``y_q = softmax(l_q)``; the prediction is ``argmax y_q``. No assumption on the
classes' proportions (so imbalanced batches are not pushed to balance), nothing trained.

To pair in one run on the same episodes, the *inductive* row of each transductive method
scores the product's refinement and the transductive row the Laplacian one: with
``--methods cosine_centroid_names cosine_centroid_names_trans`` the first is the product's
centroid + names + transductive and the second the same + Laplacian smoothing (and
``finetune_names`` / ``finetune_names_trans`` likewise under fine-tuning). Arguments after
``--`` are :mod:`finetune_table`'s (``table`` mode):

    python benchmarks/laplacian.py --lam 1 --knn 5 -- table --setup D=runs/quickstart:debian \\
        --episodes 600 --batches balanced dirichlet \\
        --methods cosine_centroid_names cosine_centroid_names_trans --out /tmp/lap
    python benchmarks/laplacian.py --report benchmarks/results/readout/laplacian  # the table
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def laplacian_assign(q, protos, scale: float, lam: float, knn: int, iters: int):
    """Class indices ``[m]`` of L2-normalized queries ``q`` ``[m, H]`` against L2-normalized
    ``protos`` ``[way, H]`` after ``iters`` Laplacian bound updates (module docstring)."""
    import jax
    import jax.numpy as jnp

    logits = scale * q @ protos.T
    sim = q @ q.T - 1e9 * jnp.eye(q.shape[0], dtype=q.dtype)
    k = min(knn, q.shape[0] - 1)
    nbrs = jax.lax.top_k(sim, k)[1]  # [m, k]
    w = jnp.zeros_like(sim).at[jnp.arange(q.shape[0])[:, None], nbrs].set(1.0)

    def step(y, _):
        return jax.nn.softmax(logits + lam * w @ y, -1), None

    y = jax.lax.scan(step, jax.nn.softmax(logits, -1), None, length=iters)[0]
    return jnp.argmax(y, -1)


def centroid_acc(lam: float, knn: int, iters: int, scale: float):
    """A stand-in for :func:`jaxmaml.run.finetune_eval._centroid_acc`: ``plain`` = the
    product's refinement, ``trans`` = the same + Laplacian smoothing."""
    import functools

    import jax
    import jax.numpy as jnp

    from jaxmaml.meta import finetune, transductive

    @functools.partial(jax.jit, static_argnames="way")
    def acc_fn(s_feats, s_labels, s_weights, q_feats, q_labels, way: int) -> dict:
        def one(sf, sl, sw, qf, ql):
            protos = finetune.cosine_head_init(sf, sl, sw, way)["kernel"].T
            refined = transductive.soft_kmeans(protos, sf, sl, sw, qf,
                                               jnp.ones(ql.shape, qf.dtype))
            lap = laplacian_assign(qf, refined, scale, lam, knn, iters)
            return {"plain": (jnp.argmax(qf @ refined.T, -1) == ql).mean(),
                    "trans": (lap == ql).mean()}

        return jax.vmap(one)(s_feats, s_labels, s_weights, q_feats, q_labels)

    return acc_fn


def lap_task_scores(task_scores, lam: float, knn: int, iters: int):
    """``task_scores`` whose ``plain`` is the product's refinement of the fine-tuned head and
    ``trans`` the same + Laplacian smoothing (one fine-tuning for both)."""
    import jax.numpy as jnp

    from jaxmaml.meta import finetune, transductive

    def scores(params, support, query, opts, cfg, need, s_bottom=None, q_bottom=None):
        s = finetune.finetune_features(params, support, opts, cfg, s_bottom)
        q = finetune.finetune_features(params, query, opts, cfg, q_bottom)
        protos = transductive.soft_kmeans(params["head"]["kernel"].T, s, support.labels,
                                          support.weights, q, query.weights)
        lap = laplacian_assign(q, protos, opts.scale, lam, knn, iters)
        return {"plain": (jnp.argmax(q @ protos.T, -1) == query.labels).mean(),
                "trans": (lap == query.labels).mean()}

    return scores


BATCHES = ("balanced", "dirichlet", "small dirichlet")


def report(directory: Path) -> str:
    """The paired gains (Laplacian − the product's soft k-means, points, episodes in
    brackets) of every result file in ``directory``, one row per file, from the files' own
    commands and per-episode accuracies."""
    import json

    out = ["| domain, readout | `--lam`, `--knn` | " + " | ".join(
        f"{b} {s}-shot" for b in BATCHES for s in (1, 5)) + " |",
        "|---|---|" + "---|" * 2 * len(BATCHES)]
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        cells = {}
        for row in data["rows"]:
            for g in row["transductive_gains"].values():
                cells[row["batch"], row["shot"]] = (f"{100 * g['mean']:+.1f} ± "
                                                    f"{100 * g['ci95']:.1f} ({g['episodes']})")
        opts = data["command"].split(" -- ")[0].split()[2:]
        readout = ("fine-tuned" if "finetune_names" in data["rows"][0]["results"]
                   else "centroid")
        out.append(f"| {data['rows'][0]['data']}, {readout} | {' '.join(opts)} | " + " | ".join(
            cells.get((b, s), "–") for b in BATCHES for s in (1, 5)) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--report", metavar="DIR", help="print the table of DIR's result files "
                   "(nothing is measured)")
    p.add_argument("--lam", type=float, default=1.0, help="weight of the neighbours' votes")
    p.add_argument("--knn", type=int, default=5, help="neighbours per query")
    p.add_argument("--iters", type=int, default=10, help="bound updates")
    p.add_argument("--scale", type=float, default=10.0, help="logit scale of the cosines "
                   "(the frozen readout; fine-tuning uses its own FinetuneOptions.scale)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="-- finetune_table.py arguments")
    args = p.parse_args(argv)
    if args.report:
        print(report(Path(args.report)))
        return 0

    import finetune_table

    from jaxmaml.run import finetune_eval

    finetune_eval._centroid_acc = centroid_acc(args.lam, args.knn, args.iters, args.scale)
    finetune_eval.task_scores = lap_task_scores(finetune_eval.task_scores, args.lam,
                                                args.knn, args.iters)
    return finetune_table.wrapped_main("laplacian.py", argv, args.rest)


if __name__ == "__main__":
    sys.exit(main())
