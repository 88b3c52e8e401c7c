"""Fine-tuning, class-name and transductive methods of evaluate() against direct references
on the same episodes: token episodes, no cached bottoms, one task at a time."""

import jax
import numpy as np
import pytest
from eval_cases import CLASSES, MODEL, VOCAB
from eval_cases import data, encoders  # noqa: F401 -- shared fixtures

from jaxmaml.data.episodes import EpisodeSampler
from jaxmaml.meta import finetune, priors, transductive
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.finetune import FinetuneOptions
from jaxmaml.models.bert import encode
from jaxmaml.run import finetune_eval
from jaxmaml.run.protocol import BASELINES, METHODS, PAIRED_WITH, evaluate, mean_ci95
from jaxmaml.types import Examples

CFG = MetaConfig(model=MODEL, way=3, pooling="mean")
OPTS = FinetuneOptions(part="top_k", top_k=1, steps=3, lr=1e-3, head_lr=1e-2, scale=10.0)
WAY, SHOT, QUERY, EPISODES, SEED = 3, 2, 3, 8, 4


@pytest.fixture(scope="module")
def names():
    """A 'label text' per class: 5 tokens, deterministic."""
    rng = np.random.default_rng(1)
    ids = np.zeros((len(CLASSES), 16), np.int32)
    ids[:, :5] = rng.integers(5, VOCAB, (len(CLASSES), 5))
    mask = (ids > 0).astype(np.int32)
    return ids, mask


def _index(data, episodes=EPISODES, batch_tasks=4, query_mix="balanced"):
    """The protocol's episodes: ``batch_tasks`` tasks per sampler step, steps 0, 1, ..."""
    sampler = EpisodeSampler(data, CLASSES, WAY, SHOT, QUERY, batch_tasks, SEED,
                             query_mix=query_mix)
    batches = [sampler.indices(b) for b in range(-(-episodes // batch_tasks))]
    return type(batches[0])(*(np.concatenate(f)[:episodes] for f in zip(*batches)))


@jax.jit
def _adapt(encoder, support):
    return finetune.finetune_adapt(encoder, support, WAY, OPTS, CFG)


@jax.jit
def _predict(params, support, query):
    return (finetune.finetune_predict(params, query, OPTS, CFG),
            transductive.finetune_transductive_predict(params, support, query, OPTS, CFG))


def _token_examples(data, rows, labels):
    return Examples(data.input_ids[rows], data.attention_mask[rows], labels.astype(np.int32),
                    np.ones(labels.shape, np.float32))


def _direct_finetune(encoder, data, names, ix, with_names, trans):
    """Per-episode accuracies: the library's fine-tuning called on one token episode."""
    accs = []
    for t in range(len(ix.support_idx)):
        support = _token_examples(data, ix.support_idx[t], ix.support_labels[t])
        query = _token_examples(data, ix.query_idx[t], ix.query_labels[t])
        if with_names:
            rows = Examples(names[0][ix.classes[t]], names[1][ix.classes[t]],
                            np.arange(WAY, dtype=np.int32), np.ones(WAY, np.float32))
            support = priors.with_label_rows(support, rows)
        logits = _predict(_adapt(encoder, support), support, query)[int(trans)]
        accs.append(float((np.argmax(logits, -1) == ix.query_labels[t]).mean()))
    return np.array(accs)


def _np_feats(encoder, ids, mask):
    h = np.asarray(encode(encoder, MODEL, ids, mask), np.float64)
    f = (h * mask[..., None]).sum(1) / mask[..., None].sum(1)
    return f / np.linalg.norm(f, axis=-1, keepdims=True)


def _np_soft_kmeans(p, s, sl, sw, q, iters=transductive.ITERS, temp=transductive.TEMPERATURE):
    """Ren et al.'s soft k-means with cosine similarities, in numpy."""
    norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    p = norm(p)
    for _ in range(iters):
        z = np.exp((q @ p.T) / temp)
        z /= z.sum(-1, keepdims=True)
        num = np.stack([(sw * (sl == c)) @ s + z[:, c] @ q for c in range(len(p))])
        den = np.array([(sw * (sl == c)).sum() + z[:, c].sum() for c in range(len(p))])
        p = norm(num / den[:, None])
    return p


def _direct_centroid(encoder, data, names, ix, with_names, trans):
    feats = _np_feats(encoder, data.input_ids, data.attention_mask)
    name_feats = _np_feats(encoder, *names)
    accs = []
    for t in range(len(ix.support_idx)):
        s, sl = feats[ix.support_idx[t]], ix.support_labels[t]
        sw = np.ones(len(sl))
        if with_names:
            s = np.concatenate([s, name_feats[ix.classes[t]]])
            sl = np.concatenate([sl, np.arange(WAY)])
            sw = np.concatenate([sw, np.full(WAY, priors.NAME_WEIGHT)])
        q = feats[ix.query_idx[t]]
        p = np.stack([(sw * (sl == c)) @ s / (sw * (sl == c)).sum() for c in range(WAY)])
        p /= np.linalg.norm(p, axis=-1, keepdims=True)
        if trans:
            p = _np_soft_kmeans(p, s, sl, sw, q)
        accs.append(((q @ p.T).argmax(-1) == ix.query_labels[t]).mean())
    return np.array(accs)


@pytest.mark.parametrize("query_mix", ["balanced",
                                       pytest.param("dirichlet", marks=pytest.mark.slow)])
def test_every_new_method_matches_its_direct_reference(data, encoders, names, query_mix):
    pretrained, meta_learned = encoders
    methods = finetune_eval.FT_METHODS
    row = evaluate({"encoder": meta_learned}, CFG, data, CLASSES, [(WAY, SHOT, QUERY)],
                   episodes=EPISODES, seed=SEED, methods=methods, pretrained_params=pretrained,
                   batch_tasks=4, class_texts=names, finetune_opts=OPTS,
                   query_mix=query_mix)[0]
    ix = _index(data, query_mix=query_mix)
    encs = {"pretrained": pretrained, "meta_learned": meta_learned}
    accs = {}
    for m in methods:
        which, kind, with_names, trans = finetune_eval.SPECS[m]
        direct = _direct_finetune if kind == "finetune" else _direct_centroid
        accs[m] = direct(encs[which], data, names, ix, with_names, trans)
        assert {k: row["results"][m][k] for k in ("mean", "ci95")} == pytest.approx(
            mean_ci95(accs[m]), abs=1e-6), m
        assert row["results"][m]["episodes"] == EPISODES
    # the references can tell the settings apart (else the check could not fail)
    assert len({tuple(a) for a in accs.values()}) > 4
    for m, vs in finetune_eval.PAIRED_WITH.items():  # each meta-learned setting vs original
        gain = row["gains"][m]
        assert gain["vs"] == vs and gain["episodes"] == EPISODES
        assert gain["mean"] == pytest.approx(np.mean(accs[m] - accs[vs]), abs=1e-6)
    assert row["query_mix"] == query_mix
    assert row["finetune"]["steps"] == OPTS.steps and row["finetune"]["part"] == "top_k"


def test_finetune_runs_fewer_episodes_and_pairs_on_the_common_ones(data, encoders):
    pretrained, meta_learned = encoders
    methods = ("meta_learned_finetune", "finetune", "linear_probe", "cosine_centroid")
    row = evaluate({"encoder": meta_learned}, CFG, data, CLASSES, [(WAY, SHOT, QUERY)],
                   episodes=12, seed=SEED, methods=methods, pretrained_params=pretrained,
                   batch_tasks=4, finetune_opts=OPTS, finetune_episodes=6)[0]
    assert {m: row["results"][m]["episodes"] for m in methods} == {
        "meta_learned_finetune": 6, "finetune": 6, "linear_probe": 12, "cosine_centroid": 12}
    ix = _index(data, episodes=6)
    ft = _direct_finetune(pretrained, data, None, ix, False, False)
    meta = _direct_finetune(meta_learned, data, None, ix, False, False)
    assert row["results"]["finetune"]["mean"] == pytest.approx(ft.mean(), abs=1e-6)
    gain = row["gains"]["meta_learned_finetune"]  # T1: meta-learned init + FT - FT
    assert gain["vs"] == "finetune" and gain["episodes"] == 6
    assert gain["mean"] == pytest.approx((meta - ft).mean(), abs=1e-6)
    best = row["gains"]["best_setting"]  # T2: the best non-baseline vs linear probe / FT
    assert best["method"] == "meta_learned_finetune"
    assert best["vs"] in ("linear_probe", "finetune")
    assert best["episodes"] == 6
    assert "finetune" in BASELINES and "meta_learned_finetune" not in BASELINES


def test_names_methods_need_class_texts(data, encoders):
    pretrained, _ = encoders
    with pytest.raises(ValueError, match="need the class names"):
        evaluate({"encoder": pretrained}, CFG, data, CLASSES, [(WAY, SHOT, QUERY)],
                 episodes=4, methods=("cosine_centroid_names",), pretrained_params=pretrained)


def test_method_tables_are_consistent():
    assert set(finetune_eval.FT_METHODS) <= set(METHODS)
    for m, vs in PAIRED_WITH.items():
        assert m in METHODS and vs in METHODS and m.startswith("meta_learned")
    assert len(finetune_eval.LABELS) == len(set(finetune_eval.LABELS.values()))
