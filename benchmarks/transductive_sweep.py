"""The class names' weight, soft k-means' temperature and iterations, and self-training, on
validation domains: per-episode accuracies of the ``*_names`` / ``*_trans`` methods of
``jaxmaml eval`` (original encoder), one setting per process.

The library's values are constants (:data:`jaxmaml.meta.priors.NAME_WEIGHT`,
:data:`jaxmaml.meta.transductive.TEMPERATURE` / ``ITERS``), bound as defaults where they are
used, so this script hands :mod:`jaxmaml.run.finetune_eval` versions of
:mod:`~jaxmaml.meta.priors` and :mod:`~jaxmaml.meta.transductive` with other values before
anything is compiled. ``--self-train W`` makes the fine-tuning methods' transductive score
fine-tune a second time, on the support (and names) plus the queries labelled by the first
fine-tuning's soft k-means, each query weighted ``W`` times its soft assignment's largest
probability, then refine over the queries again (the ``*_names`` score is then that second
fine-tuning's inductive prediction).

    python benchmarks/transductive_sweep.py --setup V=configs/quickstart.yaml:data=appstream \\
        --seq-len 64 --shot 1 5 --episodes 200 --name-weight 2 \\
        --methods cosine_centroid_names_trans cosine_centroid_names

Prints one JSON line per shot: the setting, the means and ``per_episode`` (episode ``i`` is
the protocol's episode ``i``: rows of one setup pair across settings).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def self_training_fn(cfg, opts, way, need, weight: float):
    """:func:`jaxmaml.run.finetune_eval._finetune_fn` with self-training (module docstring)."""
    import jax
    import jax.numpy as jnp

    from jaxmaml.meta import finetune, transductive
    from jaxmaml.run import finetune_eval
    from jaxmaml.types import Examples

    def one(encoder, support, query, s_bottom, q_bottom, label_rows, l_bottom):
        support, s_bottom = finetune_eval.with_names(support, s_bottom, label_rows, l_bottom)
        first = finetune.finetune_adapt(encoder, support, way, opts, cfg, s_bottom)
        s = finetune.finetune_features(first, support, opts, cfg, s_bottom)
        q = finetune.finetune_features(first, query, opts, cfg, q_bottom)
        protos = transductive.soft_kmeans(first["head"]["kernel"].T, s, support.labels,
                                          support.weights, q, query.weights)
        z = jax.nn.softmax(q @ protos.T / transductive.TEMPERATURE, -1)
        rows = Examples(*(jnp.concatenate([a, b]) for a, b in (
            (support.input_ids, query.input_ids), (support.attention_mask, query.attention_mask),
            (support.labels, jnp.argmax(z, -1).astype(support.labels.dtype)),
            (support.weights, weight * jnp.max(z, -1) * query.weights))))
        r_bottom = None if s_bottom is None else jnp.concatenate([s_bottom, q_bottom])
        params = finetune.finetune_adapt(encoder, rows, way, opts, cfg, r_bottom)
        return finetune_eval.task_scores(params, support, query, opts, cfg, need, s_bottom,
                                         q_bottom)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0, 0, 0)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setup", required=True, help="NAME=TARGET:SOURCE or NAME=TARGET:data=X")
    p.add_argument("--shot", type=int, nargs="+", default=[1, 5])
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--max-per-class", type=int)
    p.add_argument("--methods", nargs="+", default=["cosine_centroid_names_trans"])
    p.add_argument("--name-weight", type=float, default=1.0)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--self-train", type=float, default=0.0, metavar="W")
    p.add_argument("--finetune", action="append", default=[], metavar="KEY=VALUE",
                   help="a FinetuneOptions change (repeatable)")
    args = p.parse_args(argv)

    import finetune_table as ft

    from jaxmaml.meta import priors, transductive
    from jaxmaml.meta.finetune import FinetuneOptions
    from jaxmaml.run import finetune_eval

    kw = {"iters": args.iters, "temperature": args.temperature}
    finetune_eval.transductive = types.SimpleNamespace(
        soft_kmeans=functools.partial(transductive.soft_kmeans, **kw),
        finetune_transductive_predict=functools.partial(
            transductive.finetune_transductive_predict, **kw))
    finetune_eval.priors = types.SimpleNamespace(
        NAME_WEIGHT=args.name_weight,
        with_label_rows=functools.partial(priors.with_label_rows, weight=args.name_weight))
    if args.self_train:
        finetune_eval._finetune_fn = functools.lru_cache(maxsize=32)(
            functools.partial(self_training_fn, weight=args.self_train))
    setup = ft.parse_setup(args.setup)
    loaded = ft._load(setup, "original", args.max_per_class)
    t0 = time.perf_counter()
    res = ft._evaluate(setup, loaded, [(5, s, 15) for s in args.shot], args.episodes,
                       tuple(args.methods),
                       {"finetune_opts": FinetuneOptions().replace_from_strings(args.finetune),
                        "finetune_episodes": args.episodes, "per_episode": True}, args.seq_len)
    for r in res:
        print(json.dumps({"setup": setup["name"], "name_weight": args.name_weight,
                          "temperature": args.temperature, "iters": args.iters,
                          "self_train": args.self_train, "finetune": args.finetune,
                          "shot": r["shot"],
                          "seconds": round(time.perf_counter() - t0, 1),
                          "means": {m: round(v["mean"], 4) for m, v in r["results"].items()},
                          "per_episode": r["per_episode"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
