"""MAML core: meta-gradients vs independent references, first order, vmap, remat, traces."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmaml.data.synthetic import synthetic_episodes
from jaxmaml.meta import filters
from jaxmaml.tree import flatten
from jaxmaml.meta.config import MetaConfig, OptimConfig
from jaxmaml.meta.registry import maml_task_loss
from jaxmaml.meta.outer import init_state, make_optimizer, meta_grads, meta_loss
from jaxmaml.models.bert import BertConfig, encode, init_params
from jaxmaml.types import Episodes, Examples

VOCAB = 256
MODEL = BertConfig.tiny(vocab_size=VOCAB)
KEY = jax.random.key(0)
# A large inner step size so the inner steps after the first (the first one only moves the
# zero-initialised head) change the meta-gradient substantially.
LR = 1.0


def _episodes(tasks=3, way=3, shot=2, query=3, seq_len=12, seed=0):
    return jax.tree.map(jnp.asarray, synthetic_episodes(
        np.random.default_rng(seed), tasks, way, shot, query, seq_len, VOCAB, num_classes=10))


def _meta_params(model=MODEL, seed=1):
    params = init_params(model, jax.random.key(seed))
    # Perturb LayerNorms/biases away from their trivial init so every leaf matters.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    leaves = [x + 0.02 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return {"encoder": jax.tree.unflatten(tree, leaves)}


def _task(episodes, t):
    return jax.tree.map(lambda x: x[t], episodes)


# ------------------------------------------------------------------ an independent reference
def _ref_loss(encoder, head, ex, model):
    """Cross-entropy written from scratch: [CLS] feature, linear head, mean over rows."""
    h = encode(encoder, model, ex.input_ids, ex.attention_mask)[:, 0, :]
    logits = h @ head["kernel"] + head["bias"]
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(logp[jnp.arange(len(ex.labels)), ex.labels])


@jax.jit(static_argnums=(2, 3, 4, 5))
def _ref_meta_loss(encoder, episodes, way, steps, lr, model):
    """MAML written out: Python loop over tasks and inner steps, no scan, no vmap."""
    total = 0.0
    tasks = episodes.support.labels.shape[0]
    for t in range(tasks):
        ep = _task(episodes, t)
        params = (encoder, {"kernel": jnp.zeros((model.hidden_size, way), encoder[
            "embeddings"]["word_embeddings"]["embedding"].dtype),
            "bias": jnp.zeros((way,), encoder["embeddings"]["word_embeddings"]["embedding"].dtype)})
        for _ in range(steps):
            g = jax.grad(lambda p: _ref_loss(p[0], p[1], ep.support, model))(params)
            params = jax.tree.map(lambda p, g: p - lr * g, params, g)
        total = total + _ref_loss(params[0], params[1], ep.query, model)
    return total / tasks


def _tree_close(a, b, atol, rtol=0.0):
    chex.assert_trees_all_close(a, b, atol=atol, rtol=rtol)


CFG = MetaConfig(model=MODEL, way=3, num_inner_steps=2, inner_lr=LR)
# Jitted once per (config, shapes, dtypes) and shared across tests: the same meta-gradient
# program (e.g. CFG on the default episodes) is compiled once, not once per eager call.
meta_grads = jax.jit(meta_grads, static_argnums=2)


@pytest.mark.slow  # the float64 version below checks the same path at a stricter tolerance
def test_second_order_meta_gradient_matches_unrolled_reference():
    meta_params, episodes = _meta_params(), _episodes()
    (loss, _), grads = meta_grads(meta_params, episodes, CFG)
    ref_loss, ref_grads = jax.value_and_grad(_ref_meta_loss, argnums=0)(
        meta_params["encoder"], episodes, 3, 2, LR, MODEL)
    np.testing.assert_allclose(loss, ref_loss, atol=1e-6)
    _tree_close(grads["encoder"], ref_grads, atol=1e-5)
    assert optax_norm(grads) > 1e-3  # a non-trivial gradient was compared


def test_second_order_meta_gradient_matches_unrolled_reference_float64():
    """Three large inner steps (strong second-order terms), f64, tolerance 1e-9."""
    with jax.enable_x64(True):
        model = MODEL.replace(dtype="float64")
        cfg = CFG.replace(model=model, inner_lr=2.0, num_inner_steps=3)
        meta_params = jax.tree.map(lambda x: x.astype(jnp.float64), _meta_params())
        episodes = _episodes(tasks=2)  # 2 tasks keep the unrolled reference's compile short
        (loss, _), grads = meta_grads(meta_params, episodes, cfg)
        ref_loss, ref_grads = jax.value_and_grad(_ref_meta_loss, argnums=0)(
            meta_params["encoder"], episodes, 3, 3, 2.0, model)
        np.testing.assert_allclose(loss, ref_loss, atol=1e-12)
        _tree_close(grads["encoder"], ref_grads, atol=1e-9)
        assert optax_norm(grads) > 0.5


def optax_norm(tree):
    return float(jnp.sqrt(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(tree))))


def test_second_order_matches_finite_differences_in_float64():
    with jax.enable_x64(True):
        model = MODEL.replace(dtype="float64")
        # the unrolled float64 test's setting (strong second-order terms; program shared)
        cfg = CFG.replace(model=model, inner_lr=2.0, num_inner_steps=3)
        meta_params = jax.tree.map(lambda x: x.astype(jnp.float64), _meta_params())
        episodes = _episodes(tasks=2)
        (_, _), grads = meta_grads(meta_params, episodes, cfg)
        f = jax.jit(lambda p: meta_loss(p, episodes, cfg)[0])
        for seed in range(2):
            leaves, tree = jax.tree.flatten(meta_params)
            keys = jax.random.split(jax.random.key(seed), len(leaves))
            v = jax.tree.unflatten(tree, [jax.random.normal(k, x.shape, x.dtype)
                                          for x, k in zip(leaves, keys)])
            v = jax.tree.map(lambda d: d / optax_norm(v), v)  # unit direction
            eps = 1e-5
            plus = f(jax.tree.map(lambda p, d: p + eps * d, meta_params, v))
            minus = f(jax.tree.map(lambda p, d: p - eps * d, meta_params, v))
            fd = (plus - minus) / (2 * eps)
            analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads),
                                                           jax.tree.leaves(v)))
            np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-9)


def test_first_order_is_query_gradient_at_adapted_params_and_differs_from_second():
    meta_params, episodes = _meta_params(), _episodes()
    cfg_fo = CFG.replace(first_order=True)
    (_, _), fo = meta_grads(meta_params, episodes, cfg_fo)

    @jax.jit  # one compiled program instead of hundreds of eager op dispatches
    def analytic(encoder):
        # FOMAML: mean over tasks of grad_query at the adapted params (Finn et al. 2017).
        expected = []
        for t in range(3):
            ep = _task(episodes, t)
            head = {"kernel": jnp.zeros((MODEL.hidden_size, 3)), "bias": jnp.zeros((3,))}
            params = (encoder, head)
            for _ in range(2):
                g = jax.grad(lambda p: _ref_loss(p[0], p[1], ep.support, MODEL))(params)
                params = jax.tree.map(lambda p, g: p - LR * g, params, g)
            adapted_head = params[1]
            expected.append(jax.grad(lambda e: _ref_loss(e, adapted_head, ep.query, MODEL))(
                params[0]))
        return jax.tree.map(lambda *g: sum(g) / 3, *expected)

    expected = analytic(meta_params["encoder"])
    _tree_close(fo["encoder"], expected, atol=1e-5)
    (_, _), so = meta_grads(meta_params, episodes, CFG)
    diff = optax_norm(jax.tree.map(jnp.subtract, so, fo))
    assert diff > 1e-3 * optax_norm(so), "second order must differ from first order"


def test_zero_inner_steps_first_and_second_order_equal_plain_gradient():
    meta_params, episodes = _meta_params(), _episodes()
    cfg = CFG.replace(num_inner_steps=0, head_init="proto")
    (_, _), so = meta_grads(meta_params, episodes, cfg)
    (_, _), fo = meta_grads(meta_params, episodes, cfg.replace(first_order=True))

    support_labels = np.asarray(episodes.support.labels)

    def plain(encoder):  # query loss of the proto head, no adaptation, loop over tasks
        total = 0.0
        for t in range(3):
            ep = _task(episodes, t)
            s = encode(encoder, MODEL, ep.support.input_ids, ep.support.attention_mask)[:, 0]
            q = encode(encoder, MODEL, ep.query.input_ids, ep.query.attention_mask)[:, 0]
            labels = support_labels[t]  # concrete masks: jittable
            c = jnp.stack([s[labels == k].mean(0) for k in range(3)])
            logits = -((q[:, None] - c[None]) ** 2).sum(-1) + (q ** 2).sum(-1, keepdims=True)
            total += -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(q)), ep.query.labels])
        return total / 3

    ref = jax.jit(jax.grad(plain))(meta_params["encoder"])  # one program, not op by op
    _tree_close(so["encoder"], ref, atol=1e-5)
    _tree_close(fo["encoder"], ref, atol=1e-5)
    assert optax_norm(ref) > 1e-3


def test_vmapped_meta_loss_equals_mean_of_per_task_loop():
    meta_params, episodes = _meta_params(), _episodes(tasks=4)
    loss, metrics = meta_loss(meta_params, episodes, CFG)
    task_loss = jax.jit(maml_task_loss, static_argnums=2)  # one compile, four calls
    per_task = [task_loss(meta_params, _task(episodes, t), CFG)[0] for t in range(4)]
    np.testing.assert_allclose(loss, np.mean(per_task), atol=1e-6)
    assert 0.0 <= metrics["accuracy"] <= 1.0


@pytest.mark.parametrize("adapt,remat", [
    (dict(adapt="all"), "full"),  # the rest (cheaper programs, same remat code) under -m slow
    pytest.param(dict(adapt="all"), "dots_saveable", marks=pytest.mark.slow),
    pytest.param(dict(adapt="top_k_layers", adapt_top_k=1), "full", marks=pytest.mark.slow),
    pytest.param(dict(adapt="head"), "dots_saveable", marks=pytest.mark.slow)])
def test_remat_policies_give_the_same_gradients(adapt, remat):
    """remat applies to autodiff's reverse-over-reverse (``second_order='autodiff'``); it
    gives the default (hvp) meta-gradient."""
    meta_params, episodes = _meta_params(), _episodes()
    cfg = CFG.replace(**adapt)
    (_, _), ref = meta_grads(meta_params, episodes, cfg)
    (_, _), g = meta_grads(meta_params, episodes,
                           cfg.replace(second_order="autodiff", remat=remat))
    _tree_close(g, ref, atol=1e-6)


def test_cached_frozen_bottom_equals_full_recompute():
    """top-k / head filters run the frozen bottom once; same grads as an `all`-style run
    whose bottom layers get zero inner updates via a regex that selects the same leaves."""
    meta_params, episodes = _meta_params(), _episodes()
    cached = CFG.replace(adapt="top_k_layers", adapt_top_k=1)
    uncached = CFG.replace(adapt="regex", adapt_regex=r"encoder/encoder/layer/1/.*")
    (l1, _), g1 = meta_grads(meta_params, episodes, cached)
    (l2, _), g2 = meta_grads(meta_params, episodes, uncached)
    np.testing.assert_allclose(l1, l2, atol=1e-6)
    _tree_close(g1, g2, atol=1e-6)


def test_padding_rows_and_padding_tokens_do_not_affect_loss_or_gradients():
    meta_params, episodes = _meta_params(), _episodes()
    (l0, m0), g0 = meta_grads(meta_params, episodes, CFG)

    def pad(ex: Examples, rows=2, tokens=4) -> Examples:
        junk = lambda x, v: jnp.concatenate([x, jnp.full((x.shape[0], rows) + x.shape[2:], v,
                                                         x.dtype)], axis=1)
        ex = Examples(junk(ex.input_ids, 7), junk(ex.attention_mask, 1), junk(ex.labels, 1),
                      junk(ex.weights, 0.0))
        more = lambda x: jnp.pad(x, ((0, 0), (0, 0), (0, tokens)))
        return ex._replace(input_ids=more(ex.input_ids), attention_mask=more(ex.attention_mask))

    padded = Episodes(pad(episodes.support), pad(episodes.query))
    (l1, m1), g1 = meta_grads(meta_params, padded, CFG)
    np.testing.assert_allclose(l1, l0, atol=1e-6)
    np.testing.assert_allclose(m1["accuracy"], m0["accuracy"], atol=1e-6)
    _tree_close(g1, g0, atol=1e-5)


def test_meta_step_compiles_once_over_many_steps():
    optimizer = make_optimizer(OptimConfig(lr=1e-3, warmup_steps=2, decay_steps=20))
    state = init_state(_meta_params(), optimizer, jax.random.key(3))
    traces = []
    from jaxmaml.meta import outer
    inner_step = outer.make_meta_step(CFG, optimizer)

    def counted(state, episodes):
        traces.append(1)
        return inner_step(state, episodes)

    step = jax.jit(chex.assert_max_traces(counted, n=1), donate_argnums=0)
    for i in range(12):
        state, metrics = step(state, _episodes(seed=i))
    assert len(traces) == 1 and int(state.step) == 12
    assert np.isfinite(float(metrics["loss"]))


def test_adapt_filters_select_the_documented_leaves():
    params = {"encoder": init_params(MODEL, KEY), "head": {"kernel": jnp.zeros((32, 3)),
                                                          "bias": jnp.zeros(3)}}
    def adapted(**kw):
        return sorted(filters.partition(params, CFG.replace(**kw))[0])
    assert adapted(adapt="head") == ["head/bias", "head/kernel"]
    top = adapted(adapt="top_k_layers", adapt_top_k=1)
    assert all(k.startswith(("head/", "encoder/encoder/layer/1/")) for k in top)
    assert len(top) == 2 + 16
    assert len(adapted(adapt="all")) == len(jax.tree.leaves(params))
    assert adapted(adapt="regex", adapt_regex=r".*LayerNorm.*") == sorted(
        ["head/bias", "head/kernel"] + [k for k in flatten(params) if "LayerNorm" in k])


def test_meta_learn_frozen_false_leaves_frozen_layers_without_gradient():
    meta_params, episodes = _meta_params(), _episodes()
    cfg = CFG.replace(adapt="top_k_layers", adapt_top_k=1, meta_learn_frozen=False)
    (_, _), g = meta_grads(meta_params, episodes, cfg)
    flat = flatten(g)
    assert all(float(jnp.abs(v).max()) == 0.0 for k, v in flat.items()
               if "layer/0/" in k or "embeddings" in k)
    assert max(float(jnp.abs(v).max()) for k, v in flat.items() if "layer/1/" in k) > 0


def test_config_errors_are_actionable():
    with pytest.raises(ValueError, match="meta.adapt='regex' needs meta.adapt_regex"):
        MetaConfig(model=MODEL, adapt="regex")
    with pytest.raises(ValueError, match="adapt_top_k=5 must be in"):
        MetaConfig(model=MODEL, adapt="top_k_layers", adapt_top_k=5)
    with pytest.raises(ValueError, match="remat='some'"):
        MetaConfig(model=MODEL, remat="some")
    with pytest.raises(ValueError, match="decay_steps"):
        OptimConfig(warmup_steps=10, decay_steps=5)


@pytest.mark.parametrize("first_order", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_embedding_row_view_equals_full_table(first_order):
    """Adapting only the rows of the task's tokens == adapting the whole word-embedding
    table (loss and every meta-gradient, the table's included), first and second order."""
    meta_params, episodes = _meta_params(), _episodes()
    n_tokens = episodes.support.input_ids[0].size + episodes.query.input_ids[0].size
    assert n_tokens < VOCAB  # the row view is active for this shape
    cfg = CFG.replace(first_order=first_order)
    (l1, m1), g1 = meta_grads(meta_params, episodes, cfg)
    (l2, m2), g2 = meta_grads(meta_params, episodes, cfg.replace(embedding_rows=False))
    np.testing.assert_allclose(l1, l2, atol=1e-6)
    np.testing.assert_allclose(m1["accuracy"], m2["accuracy"])
    _tree_close(g1, g2, atol=1e-6)
    table_grad = g1["encoder"]["embeddings"]["word_embeddings"]["embedding"]
    used = np.unique(np.concatenate([np.ravel(episodes.support.input_ids),
                                     np.ravel(episodes.query.input_ids)]))
    unused = np.setdiff1d(np.arange(VOCAB), used)
    assert np.abs(table_grad[used]).sum() > 1e-3 and np.all(table_grad[unused] == 0)


def test_embedding_row_view_is_off_when_it_cannot_help():
    from jaxmaml.meta.maml import embedding_row_view
    ep = _task(_episodes(), 0)
    enc = _meta_params()["encoder"]
    for cfg in (CFG.replace(embedding_rows=False), CFG.replace(adapt="head"),
                CFG.replace(model=MODEL.replace(vocab_size=100))):  # more tokens than rows
        *_, rows = embedding_row_view(enc, *ep, cfg)
        assert rows is None
    enc2, s2, q2, cfg2, _, rows = embedding_row_view(enc, *ep, CFG)
    table = enc["embeddings"]["word_embeddings"]["embedding"]
    small = enc2["embeddings"]["word_embeddings"]["embedding"]
    assert cfg2.model.vocab_size == small.shape[0] == ep.support.input_ids.size + ep.query.input_ids.size
    np.testing.assert_array_equal(small[s2.input_ids], table[ep.support.input_ids])
    np.testing.assert_array_equal(small[q2.input_ids], table[ep.query.input_ids])


def test_task_chunks_equal_all_tasks_at_once():
    """meta.task_chunk=k (a scan over chunks of k tasks, gradients accumulated) gives the
    vmap-over-all-tasks loss, metrics and meta-gradient (first order here; second order
    exactly in float64 below)."""
    meta_params, episodes = _meta_params(), _episodes(tasks=4)
    cfg = CFG.replace(first_order=True)
    (l0, m0), g0 = meta_grads(meta_params, episodes, cfg)
    for k in (2,):  # chunks of one task: the float64 test below
        (l1, m1), g1 = meta_grads(meta_params, episodes, cfg.replace(task_chunk=k))
        np.testing.assert_allclose(l1, l0, atol=1e-6)
        np.testing.assert_allclose(m1["accuracy"], m0["accuracy"], atol=1e-6)
        _tree_close(g1, g0, atol=1e-6)
    with pytest.raises(ValueError, match="task_chunk=3 must divide the 4 tasks"):
        meta_grads(meta_params, episodes, cfg.replace(task_chunk=3))
    with pytest.raises(ValueError, match="task_chunk=-1 must be >= 0"):
        CFG.replace(task_chunk=-1)


def test_task_chunks_equal_all_tasks_at_once_float64():
    """In float64 the chunked sum and the vmapped mean agree to rounding (1e-12): the
    float32 differences (~1e-9 on cancelling sums like the last LayerNorm bias) are
    summation order, not math."""
    with jax.enable_x64(True):
        model = MODEL.replace(dtype="float64")
        cfg = CFG.replace(model=model)
        meta_params = jax.tree.map(lambda x: x.astype(jnp.float64), _meta_params())
        episodes = _episodes(tasks=4)
        (l0, _), g0 = meta_grads(meta_params, episodes, cfg)
        (l1, _), g1 = meta_grads(meta_params, episodes, cfg.replace(task_chunk=1))
        np.testing.assert_allclose(l1, l0, atol=1e-13)
        _tree_close(g1, g0, atol=1e-12)


def test_task_chunks_keep_every_task_once():
    from jaxmaml.meta.outer import chunk_tasks
    episodes = _episodes(tasks=6)
    chunks = chunk_tasks(episodes, 2)  # [3 chunks, 2 tasks, ...]
    assert chunks.support.input_ids.shape[:2] == (3, 2)
    order = [0, 3, 1, 4, 2, 5]  # chunk j holds tasks j and j + 3
    np.testing.assert_array_equal(chunks.query.labels.reshape(6, -1),
                                  episodes.query.labels[np.array(order)])
