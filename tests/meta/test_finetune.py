"""Test-time fine-tuning against references: the cosine centroid at 0 steps, a plain Python
loop of Optax updates (float64) for every part and with the pair loss, the pair loss pair by
pair, padding rows, cached bottoms, label texts."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmaml.meta import lora
from jaxmaml.meta.baselines import cosine_centroid_logits, sentence_features
from jaxmaml.meta.config import MetaConfig
from jaxmaml.meta.finetune import (FinetuneOptions, finetune_adapt, finetune_bottom,
                                   finetune_predict, pair_loss)
from jaxmaml.meta.priors import with_label_rows
from jaxmaml.models.bert import BertConfig, embed, encode, init_params, run_layers
from jaxmaml.tree import flatten, unflatten
from jaxmaml.types import Examples

MODEL = BertConfig.tiny(num_hidden_layers=3)
WAY, SEQ = 3, 8
adapt_jit = jax.jit(finetune_adapt, static_argnums=(2, 3, 4))
predict_jit = jax.jit(finetune_predict, static_argnums=(2, 3))


def _examples(seed, n, way=WAY, weights=None):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, MODEL.vocab_size, (n, SEQ)).astype(np.int32)
    lengths = rng.integers(2, SEQ + 1, n)
    mask = (np.arange(SEQ)[None] < lengths[:, None]).astype(np.int32)
    labels = (np.arange(n) % way).astype(np.int32)
    w = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    return Examples(ids * mask, mask, labels, w)


@pytest.fixture(scope="module")
def encoder():
    return init_params(MODEL, jax.random.key(3))


def _np_features(encoder, model, ex):
    """Mean over non-pad tokens of the last hidden states, L2-normalized (numpy)."""
    h = np.asarray(encode(encoder, model, ex.input_ids, ex.attention_mask))
    m = np.asarray(ex.attention_mask)[..., None]
    f = (h * m).sum(1) / m.sum(1)
    return f / np.linalg.norm(f, axis=-1, keepdims=True)


def test_zero_steps_is_the_cosine_centroid(encoder):
    support, query = _examples(0, 6), _examples(1, 7)
    opts = FinetuneOptions(steps=0, scale=7.0)
    cfg = MetaConfig(model=MODEL, way=WAY)
    logits = predict_jit(adapt_jit(encoder, support, WAY, opts, cfg), query, opts, cfg)
    s = sentence_features(encoder, cfg, support.input_ids, support.attention_mask, 8)
    q = sentence_features(encoder, cfg, query.input_ids, query.attention_mask, 8)
    ref = cosine_centroid_logits(s, support.labels, q, WAY)
    np.testing.assert_allclose(np.asarray(logits) / 7.0, ref, atol=1e-6)


# ---------------------------------------------------------------- the Optax loop reference
def _trained_paths(flat, part, top_k):
    def top(p):
        bottom = MODEL.num_hidden_layers - top_k
        return p.startswith("encoder/layer/") and int(p.split("/")[2]) >= bottom
    if part == "head":
        return []
    if part == "all":
        return [p for p in flat if not p.startswith("pooler/")]
    return [p for p in flat if top(p) and (part == "top_k" or (p.endswith("kernel")
                                                               and flat[p].ndim == 2))]


def _reference(encoder, support, opts, model):
    """Full encoder every step, two separate Optax optimizers, a Python loop."""
    flat = flatten(encoder)
    paths = sorted(_trained_paths(flat, opts.part, opts.top_k))
    if opts.part == "lora":
        key = jax.random.key(opts.seed)
        body = {p: {"a": jax.random.normal(jax.random.fold_in(key, i),
                                           (flat[p].shape[0], opts.lora_rank), jnp.float64)
                    / np.sqrt(flat[p].shape[0]),
                    "b": jnp.zeros((opts.lora_rank, flat[p].shape[1]), jnp.float64)}
                for i, p in enumerate(paths)}
        enc_of = lambda b: unflatten({**flat, **{p: flat[p] + b[p]["a"] @ b[p]["b"]  # noqa: E731
                                                 for p in b}})
    else:
        body = {p: flat[p] for p in paths}
        enc_of = lambda b: unflatten({**flat, **b})  # noqa: E731

    def feats(enc):
        h = encode(enc, model, support.input_ids, support.attention_mask)
        m = support.attention_mask[..., None].astype(h.dtype)
        f = (h * m).sum(1) / m.sum(1)
        return f / jnp.linalg.norm(f, axis=-1, keepdims=True)

    y, w = support.labels, jnp.asarray(support.weights, jnp.float64)
    f0 = np.asarray(feats(encoder))
    protos = np.stack([(f0 * w[:, None])[y == c].sum(0) / w[y == c].sum() for c in range(WAY)])
    kernel = jnp.asarray((protos / np.linalg.norm(protos, axis=-1, keepdims=True)).T)

    def pairs(f):
        """SetFit's cosine-similarity loss, pair by pair: half the mean over pairs of one
        class of (cos - 1)^2, half the mean over pairs of two classes of cos^2."""
        tot = {True: 0.0, False: 0.0}
        norm = {True: 0.0, False: 0.0}
        for i in range(len(y)):
            for j in range(len(y)):
                if i != j:
                    same = bool(y[i] == y[j])
                    tot[same] += w[i] * w[j] * (f[i] @ f[j] - same) ** 2
                    norm[same] += w[i] * w[j]
        return 0.5 * tot[True] / norm[True] + 0.5 * tot[False] / norm[False]

    def loss(b, k):
        f = feats(enc_of(b))
        logits = opts.scale * f @ (k / jnp.linalg.norm(k, axis=0))
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1)[:, 0]
        xent = (nll * w).sum() / w.sum()
        return xent + opts.pair_weight * pairs(f) if opts.pair_weight else xent

    body_tx = optax.adamw(opts.lr, weight_decay=opts.weight_decay)
    head_tx = optax.adam(opts.head_lr)
    body_state, head_state = body_tx.init(body), head_tx.init(kernel)
    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
    for _ in range(opts.steps):
        gb, gk = grad_fn(body, kernel)
        ub, body_state = body_tx.update(gb, body_state, body)
        uk, head_state = head_tx.update(gk, head_state, kernel)
        body, kernel = optax.apply_updates(body, ub), optax.apply_updates(kernel, uk)
    return enc_of(body), kernel


# The default suite keeps top_k and lora (a trained body of each kind); all and head
# (the same loop over more or fewer leaves) run under -m slow.
# pair_weight > 0 adds the SetFit-style pair loss (top_k; lora under -m slow).
@pytest.mark.parametrize("part,pair_weight", [
    ("top_k", 0.0), ("lora", 0.0), ("top_k", 0.7),
    pytest.param("lora", 0.7, marks=pytest.mark.slow),
    pytest.param("all", 0.0, marks=pytest.mark.slow),
    pytest.param("head", 0.0, marks=pytest.mark.slow)])
def test_jitted_finetune_equals_a_python_loop_of_optax_updates(encoder, part, pair_weight):
    opts = FinetuneOptions(part=part, top_k=2, lora_rank=3, steps=3, lr=0.05, head_lr=0.2,
                           scale=10.0, weight_decay=0.1 if part != "head" else 0.0, seed=4,
                           pair_weight=pair_weight)
    with jax.enable_x64():
        model = MODEL.replace(dtype="float64")
        enc64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), encoder)
        support = _examples(2, 7, weights=[1, 1, 1, 1, 1, 0.5, 2.0])
        cfg = MetaConfig(model=model, way=WAY)
        got = adapt_jit(enc64, support, WAY, opts, cfg)
        ref_enc, ref_kernel = _reference(enc64, support, opts, model)
        np.testing.assert_allclose(got["head"]["kernel"], ref_kernel, rtol=1e-9, atol=1e-11)
        changed = 0
        for p, leaf in flatten(ref_enc).items():
            if p.startswith("pooler/"):
                continue
            # atol: a key bias's gradient is 0 analytically (softmax is shift-invariant), so
            # Adam turns round-off (~1e-17) into updates of ~lr * 1e-17 / eps ~ 1e-11
            np.testing.assert_allclose(flatten(got["encoder"])[p], leaf, rtol=1e-9,
                                       atol=1e-9, err_msg=p)
            changed += not np.allclose(leaf, flatten(enc64)[p], atol=1e-6)
        assert changed > 0 or part == "head"  # the encoder part really moved
        k0 = adapt_jit(enc64, support, WAY, opts.replace(steps=0), cfg)["head"]["kernel"]
        assert not np.allclose(k0, got["head"]["kernel"], atol=1e-4)


def test_pair_loss_pair_by_pair():
    """Three rows of class 0, one of class 1, a padding row: (cos - same)^2 over the pairs,
    the pairs of one class and of two classes half each; 1 shot: only the second half."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(5, 4))
    y = np.array([0, 0, 1, 0, 1])
    w = np.array([1.0, 2.0, 1.0, 0.5, 0.0])
    z = f / np.linalg.norm(f, axis=1, keepdims=True)
    pos = [(i, j) for i in range(5) for j in range(5) if i != j and y[i] == y[j]]
    neg = [(i, j) for i in range(5) for j in range(5) if y[i] != y[j]]
    mean = lambda ps, t: (sum(w[i] * w[j] * (z[i] @ z[j] - t) ** 2 for i, j in ps)  # noqa: E731
                          / sum(w[i] * w[j] for i, j in ps))
    with jax.enable_x64():
        got = pair_loss(jnp.asarray(f), jnp.asarray(y), jnp.asarray(w))
        np.testing.assert_allclose(got, 0.5 * mean(pos, 1) + 0.5 * mean(neg, 0), rtol=1e-12)
        one = np.array([0, 1, 2, 3, 4])  # no pair of one class
        got = pair_loss(jnp.asarray(f), jnp.asarray(one), jnp.asarray(w))
        neg = [(i, j) for i in range(5) for j in range(5) if i != j]
        np.testing.assert_allclose(got, 0.5 * mean(neg, 0), rtol=1e-12)


def test_padding_rows_change_nothing(encoder):
    opts = FinetuneOptions(part="top_k", top_k=1, steps=2, lr=0.01, head_lr=0.1,
                           pair_weight=0.5)
    cfg = MetaConfig(model=MODEL, way=WAY)
    support = _examples(5, 6)
    junk = _examples(6, 4, weights=np.zeros(4))
    padded = jax.tree.map(lambda a, b: np.concatenate([a, b]), support, junk)
    query = _examples(7, 5)
    a = predict_jit(adapt_jit(encoder, support, WAY, opts, cfg), query, opts, cfg)
    b = predict_jit(adapt_jit(encoder, padded, WAY, opts, cfg), query, opts, cfg)
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("part", ["top_k", pytest.param("lora", marks=pytest.mark.slow),
                                  pytest.param("head", marks=pytest.mark.slow)])
def test_a_precomputed_bottom_equals_computing_it(encoder, part):
    """Fine-tuning reuses the bottom given (and Examples.bottom of a frozen-bottom run).
    float64: Adam's first steps are ~lr * sign(grad), which float32 round-off flips for
    gradients near 0, so only float64 separates a real difference from round-off."""
    opts = FinetuneOptions(part=part, top_k=1, lora_rank=2, steps=2, lr=0.01, head_lr=0.1)
    with jax.enable_x64():
        model = MODEL.replace(dtype="float64")
        enc = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), encoder)
        support, query = _examples(8, 6), _examples(9, 5)
        cfg = MetaConfig(model=model, way=WAY, adapt="top_k_layers", outer_frozen_layers=1)
        ref = predict_jit(adapt_jit(enc, support, WAY, opts, cfg), query, opts, cfg)
        with_bottom = lambda ex: ex._replace(bottom=run_layers(  # noqa: E731
            enc, model, embed(enc, model, ex.input_ids), ex.attention_mask, 0, 1))
        s, q = with_bottom(support), with_bottom(query)
        tp = jax.jit(finetune_adapt, static_argnums=(2, 3, 4))(
            enc, s, WAY, opts, cfg, finetune_bottom(enc, s, opts, cfg))
        got = predict_jit(tp, q, opts, cfg, finetune_bottom(enc, q, opts, cfg))
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


def test_all_with_a_frozen_bottom_trains_every_layer_above_it(encoder):
    opts = FinetuneOptions(part="all", steps=1, lr=0.01)
    cfg = MetaConfig(model=MODEL, way=WAY, adapt="top_k_layers", outer_frozen_layers=1)
    tp = adapt_jit(encoder, _examples(10, 6), WAY, opts, cfg)
    moved = {p for p, v in flatten(tp["encoder"]).items()
             if not np.array_equal(v, flatten(encoder)[p])}
    assert moved and all(p.startswith(("encoder/layer/1/", "encoder/layer/2/")) for p in moved)


def test_label_texts_alone_give_nearest_name_zero_shot(encoder):
    """Class 0 has two examples and its name; classes 1 and 2 have only a name."""
    opts = FinetuneOptions(steps=0)
    cfg = MetaConfig(model=MODEL, way=WAY)
    support = _examples(11, 4, weights=[1, 0, 0, 1])  # rows 1, 2: padding
    support = support._replace(labels=np.array([0, 1, 2, 0], np.int32))
    names = _examples(12, WAY)
    rows = with_label_rows(support, names, 0.5)
    query = _examples(13, 9)
    logits = predict_jit(adapt_jit(encoder, rows, WAY, opts, cfg), query, opts, cfg)
    s, n, q = (_np_features(encoder, MODEL, ex) for ex in (support, names, query))
    c0 = s[0] + s[3] + 0.5 * n[0]
    protos = np.stack([c0 / np.linalg.norm(c0), n[1], n[2]])
    np.testing.assert_allclose(np.asarray(logits) / opts.scale, q @ protos.T, atol=1e-5)
    # only names: every class zero-shot
    only = with_label_rows(support._replace(weights=np.zeros(4, np.float32)), names)
    logits = predict_jit(adapt_jit(encoder, only, WAY, opts, cfg), query, opts, cfg)
    np.testing.assert_array_equal(np.argmax(logits, -1), (q @ n.T).argmax(-1))


def test_options_are_validated():
    with pytest.raises(ValueError, match="part='x'"):
        FinetuneOptions(part="x")
    with pytest.raises(ValueError, match="steps=-1"):
        FinetuneOptions(steps=-1)
    with pytest.raises(ValueError, match="top_k=4 exceeds"):
        adapt_jit(init_params(MODEL, jax.random.key(0)), _examples(0, 4), WAY,
                  FinetuneOptions(top_k=4), MetaConfig(model=MODEL, way=WAY))
    with pytest.raises(ValueError, match=r"meta\.finetune\.top_k=4 exceeds"):  # meta-training
        MetaConfig(model=MODEL, way=WAY, algorithm="finetune", finetune=FinetuneOptions(top_k=4))
    assert lora.SEP == "__"  # the LoRA factor keys are meta.lora's


def test_vmapped_over_tasks_equals_one_task_at_a_time(encoder):
    """float64: batched matmuls round differently, and Adam's ~lr * sign(grad) first steps
    amplify float32 round-off of near-zero gradients."""
    opts = FinetuneOptions(part="lora", top_k=1, lora_rank=2, steps=2, lr=0.01, head_lr=0.1)
    with jax.enable_x64():
        model = MODEL.replace(dtype="float64")
        enc = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), encoder)
        cfg = MetaConfig(model=model, way=WAY)
        tasks = [(_examples(20 + t, 6), _examples(30 + t, 5)) for t in range(3)]
        stack = lambda xs: jax.tree.map(lambda *a: np.stack(a), *xs)  # noqa: E731

        @jax.jit
        def batched(support, query):
            def one(s, q):
                return finetune_predict(finetune_adapt(enc, s, WAY, opts, cfg), q, opts, cfg)
            return jax.vmap(one)(support, query)

        got = batched(stack([s for s, _ in tasks]), stack([q for _, q in tasks]))
        for t, (s, q) in enumerate(tasks):
            one = predict_jit(adapt_jit(enc, s, WAY, opts, cfg), q, opts, cfg)
            np.testing.assert_allclose(got[t], one, rtol=1e-10, atol=1e-10)
