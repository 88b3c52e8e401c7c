"""Dense + lexical features: the sentence embedding beside a bag of word pieces (validation).

A sentence encoder matches meaning; a topic is also carried by rare words two texts share
(hybrid dense + sparse retrieval). Here every feature ``jaxmaml eval``'s centroid methods
read (the pool's and the class names') becomes ``[sqrt(1 - b) * dense, sqrt(b) *
lexical]``, where ``lexical`` is the L2-normalized tf-idf vector of the text's word pieces
(the same ``--seq-len`` tokens the encoder reads; the special tokens and pieces of one
character left out; idf over the evaluation pool, the unlabelled texts a user labels),
so a cosine is ``(1 - b) cos_dense + b cos_lexical``. The fine-tuned methods read out the
tuned encoder's features the same way: the head's class directions beside the support's
tf-idf class means, refined by soft k-means in the hybrid space (``--idf batch``: idf over
each episode's support, names and queries instead of the pool). ``--weight 0`` is the
product. Arguments after ``--`` are :mod:`finetune_table`'s (``table`` mode; the
``cosine_centroid_{names,trans,names_trans}`` and ``finetune*`` methods); runs with
different weights score the protocol's same episodes and pair:

    python benchmarks/lexical.py --weight 0.4 -- table --setup D=runs/quickstart:debian \\
        --episodes 40 --finetune-episodes 40 --batches balanced \\
        --methods finetune_names finetune_names_trans --out /tmp/lex/D-w0.4
    python benchmarks/lexical.py --report DIR   # each DIR/SETUP-TAG.json vs SETUP-base.json
"""

from __future__ import annotations

import argparse
import functools
import sys
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

def keep_mask(tokenizer) -> np.ndarray:
    """``[V]`` 1 for the word pieces that count (more than one character, not one of the
    tokenizer's special tokens)."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    keep = np.array([len(p.removeprefix("##")) > 1 for p in pieces], np.float32)
    keep[tokenizer.all_special_ids] = 0
    return keep


def idf(rows, keep, xp=np):
    """``[V]`` smoothed idf, ``log((1 + n) / (1 + df)) + 1``, over the ``n`` rows of
    ``rows`` ``[n, L]`` (the pool, or the support, names and batch being labelled); 0 where
    ``keep`` is 0. ``xp``: numpy or jax.numpy."""
    n = rows.shape[0]
    if xp is np:
        df = np.zeros(keep.shape[0], np.float64)
        for row in rows:
            df[np.unique(row)] += 1
    else:
        r = xp.broadcast_to(xp.arange(n)[:, None], rows.shape)
        df = xp.zeros((n, keep.shape[0]), xp.float32).at[r, rows].set(1.0).sum(0)
    return ((xp.log((1 + n) / (1 + df)) + 1) * keep).astype(xp.float32)


def lexical(input_ids, idf, xp=np):
    """L2-normalized tf-idf rows ``[n, V]`` (``log(1 + count) * idf``) of ``input_ids``
    ``[n, L]``; ``xp``: numpy or jax.numpy."""
    n, v = input_ids.shape[0], idf.shape[0]
    rows = xp.broadcast_to(xp.arange(n)[:, None], input_ids.shape)
    if xp is np:
        counts = np.zeros((n, v), np.float32)
        np.add.at(counts, (rows, input_ids), 1.0)
    else:
        counts = xp.zeros((n, v), xp.float32).at[rows, input_ids].add(1.0)
    x = xp.log1p(counts) * idf
    return x / xp.maximum(xp.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def hybrid(dense, lex, weight: float, xp=np):
    """``[sqrt(1 - weight) * dense / |dense|, sqrt(weight) * lex]`` (``lex`` unit rows)."""
    d = dense / xp.maximum(xp.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
    return xp.concatenate([xp.sqrt(1 - weight) * d, xp.sqrt(weight) * lex], 1)


IDF: dict = {}  # the pool's idf, set by the patched prepare for the patched task_scores


def lexical_prepare(prepare, weight: float):
    """``finetune_eval.prepare`` whose centroid features are the hybrid ones."""
    from transformers import AutoTokenizer

    from jaxmaml.run.config_load import minilm_dir

    keep = keep_mask(AutoTokenizer.from_pretrained(minilm_dir()))

    def prep(methods, encoders, cfg, pool, names, opts):
        out = prepare(methods, encoders, cfg, pool, names, opts)
        IDF["idf"] = pool_idf = idf(np.asarray(pool.input_ids), keep)
        lex = lexical(np.asarray(pool.input_ids), pool_idf)
        feats = {k: hybrid(v, lex, weight) for k, v in out.feats.items()}
        name_feats = {}
        if out.name_feats:
            name_lex = lexical(np.asarray(names[0]), pool_idf)
            name_feats = {k: hybrid(v, name_lex, weight) for k, v in out.name_feats.items()}
        return out._replace(feats=feats, name_feats=name_feats)

    return prep


def lexical_task_scores(weight: float, idf_from: str = "pool"):
    """``finetune_eval.task_scores`` reading out the fine-tuned encoder's hybrid features:
    the head's (dense) class directions beside the support's lexical class means, refined
    by soft k-means over the hybrid queries."""
    import jax.numpy as jnp

    from jaxmaml.meta import finetune, transductive
    from jaxmaml.meta.encoding import l2_normalize

    def scores(params, support, query, opts, cfg, need, s_bottom=None, q_bottom=None):
        w = jnp.asarray(IDF["idf"])
        if idf_from == "batch":
            w = idf(jnp.concatenate([support.input_ids, query.input_ids]),
                    (w > 0).astype(jnp.float32), jnp)
        way = params["head"]["kernel"].shape[1]
        s = hybrid(finetune.finetune_features(params, support, opts, cfg, s_bottom),
                   lexical(support.input_ids, w, jnp), weight, jnp)
        q = hybrid(finetune.finetune_features(params, query, opts, cfg, q_bottom),
                   lexical(query.input_ids, w, jnp), weight, jnp)
        lex_protos = finetune.cosine_head_init(s[:, -w.shape[0]:], support.labels,
                                               support.weights, way)["kernel"].T
        dense = l2_normalize(params["head"]["kernel"].T)
        protos = l2_normalize(hybrid(dense, lex_protos, weight, jnp))
        acc = lambda p: (jnp.argmax(q @ p.T, -1) == query.labels).mean()  # noqa: E731
        out = {}
        if "plain" in need:
            out["plain"] = acc(protos)
        if "trans" in need:
            out["trans"] = acc(transductive.soft_kmeans(protos, s, support.labels,
                                                        support.weights, q, query.weights))
        return out

    return scores


def report(directory: Path) -> str:
    """Each result file ``SETUP-TAG.json`` of ``directory`` paired per episode with
    ``SETUP-base.json`` (``--weight 0``, the product): points, mean ± 95% CI (episodes)."""
    import json

    from jaxmaml.run.protocol import mean_ci95

    def rows(path):
        return {(r["batch"], r["shot"]): r["per_episode"]
                for r in json.loads(path.read_text())["rows"]}

    out = ["| file | method | batch | 1-shot | 5-shot |", "|---|---|---|---|---|"]
    for path in sorted(directory.glob("*.json")):
        setup, _, tag = path.stem.partition("-")
        if tag == "base":
            continue
        base, mine = rows(directory / f"{setup}-base.json"), rows(path)
        for method in sorted({m for cell in mine.values() for m in cell}):
            for batch in sorted({b for b, _ in mine}):
                cells = []
                for shot in (1, 5):
                    if method not in mine.get((batch, shot), {}):
                        cells.append("–")
                        continue
                    a = np.asarray(mine[batch, shot][method])
                    d = mean_ci95(a - np.asarray(base[batch, shot][method][:len(a)]))
                    cells.append(f"{100 * d['mean']:+.1f} ± {100 * d['ci95']:.1f} ({len(a)})")
                out.append(f"| {path.stem} | `{method}` | {batch} | {' | '.join(cells)} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--report", metavar="DIR", help="print the paired table of DIR's result "
                   "files (nothing is measured)")
    p.add_argument("--weight", type=float, default=0.0, help="b: the lexical cosine's share")
    p.add_argument("--idf", choices=("pool", "batch"), default="pool",
                   help="idf over the evaluation pool, or (fine-tuned rows only) over each "
                   "episode's support, names and queries")
    p.add_argument("--name-weight", type=float, default=1.0,
                   help="how many support rows a class name counts as (the product: 1)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="-- finetune_table.py arguments")
    args = p.parse_args(argv)
    if args.report:
        print(report(Path(args.report)))
        return 0
    if not 0 <= args.weight < 1:
        p.error(f"--weight {args.weight}: must be in [0, 1)")

    import finetune_table

    from jaxmaml.meta import priors
    from jaxmaml.run import finetune_eval

    if args.name_weight != 1.0:
        finetune_eval.priors = types.SimpleNamespace(
            NAME_WEIGHT=args.name_weight,
            with_label_rows=functools.partial(priors.with_label_rows, weight=args.name_weight))
    finetune_eval.prepare = lexical_prepare(finetune_eval.prepare, args.weight)
    finetune_eval.task_scores = lexical_task_scores(args.weight, args.idf)
    return finetune_table.wrapped_main("lexical.py", argv, args.rest)


if __name__ == "__main__":
    sys.exit(main())
