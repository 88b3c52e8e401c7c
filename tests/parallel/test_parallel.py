"""Sharded meta-training == single-device meta-training (8 forced CPU devices).

Every sharded run is compared with a plain single-device ``jit_meta_step`` run: per-step
loss and grad norm, and the whole state (params and Adam moments) after 3 meta-steps; the
meta-gradients themselves are compared through ``meta_grads`` jitted with the same
shardings. Compiling a second-order MAML step takes ~8 s on 2 cores, so the default run
covers the sharded layouts (fsdp, tensor) on meshes (8, 1), (4, 2), (2, 4) in both orders;
``-m slow`` runs the full grid (4 meshes x 3 presets x 2 orders).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from optax import global_norm as optax_global_norm
from jax.sharding import PartitionSpec as P

from jaxmaml import parallel
from jaxmaml.data.synthetic import synthetic_episodes
from jaxmaml.meta.config import MetaConfig, OptimConfig
from jaxmaml.meta.outer import (init_meta_params, jit_meta_step, make_optimizer, meta_grads,
                                new_state)
from jaxmaml.models.bert import BertConfig, init_params
from jaxmaml import tree as jtree

TASKS, STEPS, SEQ = 8, 3, 16
TOL = dict(atol=1e-5, rtol=1e-5)
CFG = MetaConfig(model=BertConfig.tiny(max_position_embeddings=SEQ), way=3, num_inner_steps=2,
                 inner_lr=0.1, pooling="mean")
OPTIMIZER = make_optimizer(OptimConfig(lr=1e-3))
SHAPES = [(1, 1), (8, 1), (4, 2), (2, 4)]
PRESETS = ["replicated", "fsdp", "tensor"]
QUERY = ("meta_params", "encoder", "encoder", "layer", "0", "attention", "self", "query",
         "kernel")

# Sharded layouts and both orders by default; (1, 1) and `replicated` (trivial layouts) and
# the rest of the grid are marked slow.
DEFAULT_GRID = [((8, 1), "fsdp", False),
                ((4, 2), "tensor", False), ((2, 4), "tensor", True),
                ((2, 4), "fsdp", True)]
FULL_GRID = [(s, r, fo) for s in SHAPES for r in PRESETS for fo in (False, True)
             if (s, r, fo) not in DEFAULT_GRID]


def cfg_for(first_order: bool) -> MetaConfig:
    return CFG.replace(first_order=first_order)


def init_fn():
    encoder = init_params(CFG.model, jax.random.key(0))
    return new_state(encoder, CFG, OPTIMIZER, jax.random.key(1))


def host_episodes(step: int):
    return synthetic_episodes(np.random.default_rng(100 + step), TASKS, CFG.way, 2, 2, SEQ,
                              CFG.model.vocab_size)


def mesh_of(shape) -> jax.sharding.Mesh:
    return parallel.make_mesh(shape, devices=jax.devices()[:int(np.prod(shape))])


def get(tree, path):
    for k in path:
        tree = getattr(tree, k) if isinstance(k, str) and hasattr(tree, "_fields") else tree[k]
    return tree


_CACHE: dict = {}


def reference(first_order: bool):
    """(per-step metrics, final state) of the single-device, unsharded run."""
    key = ("ref", first_order)
    if key not in _CACHE:
        step_fn = jit_meta_step(cfg_for(first_order), OPTIMIZER)
        state = jax.device_put(jax.jit(init_fn)(), jax.devices()[0])
        metrics = []
        for i in range(STEPS):
            state, m = step_fn(state, jax.device_put(host_episodes(i), jax.devices()[0]))
            metrics.append(m)
        _CACHE[key] = (jax.device_get(metrics), jax.device_get(state))
    return _CACHE[key]


def sharded(shape, rules, first_order):
    """Compiled step, shardings, per-step metrics and final state of a sharded run."""
    key = (shape, rules, first_order)
    if key not in _CACHE:
        mesh = mesh_of(shape)
        state, shardings = parallel.create_state(init_fn, mesh, rules)
        step_fn = parallel.jit_sharded_meta_step(cfg_for(first_order), OPTIMIZER, mesh,
                                                 shardings)
        metrics = []
        for i in range(STEPS):
            state, m = step_fn(state, parallel.put_episodes(host_episodes(i), mesh))
            metrics.append(m)
        _CACHE[key] = dict(mesh=mesh, step_fn=step_fn, shardings=shardings, metrics=metrics,
                           state=state)
    return _CACHE[key]


# --------------------------------------------------------------------------- mesh & rules


def test_make_mesh_sizes_and_errors():
    assert dict(parallel.make_mesh().shape) == {"data": 8, "model": 1}
    assert dict(parallel.make_mesh((2, -1)).shape) == {"data": 2, "model": 4}
    assert dict(parallel.make_mesh((-1, 2), devices=jax.devices()[:4]).shape) == {
        "data": 2, "model": 2}
    with pytest.raises(ValueError, match="multiply to 8"):
        parallel.make_mesh((3, 2))
    with pytest.raises(ValueError, match="not divisible by 3"):
        parallel.make_mesh((-1, 3))
    with pytest.raises(ValueError, match="at most one -1"):
        parallel.make_mesh((-1, -1))
    with pytest.raises(ValueError, match="one size per axis"):
        parallel.make_mesh((8,))


def test_rule_presets_on_bert_and_adam_paths():
    abstract = jax.eval_shape(init_fn)
    mesh = mesh_of((4, 2))
    specs = jax.tree.map(lambda s: s.spec, parallel.tree_shardings(abstract, mesh, "tensor"))
    layer = ("encoder", "encoder", "layer", "1")
    expect = {
        ("attention", "self", "query", "kernel"): P(None, "model"),
        ("attention", "self", "value", "bias"): P("model"),
        ("attention", "output", "dense", "kernel"): P("model", None),
        ("attention", "output", "dense", "bias"): P(),
        ("intermediate", "dense", "kernel"): P(None, "model"),
        ("intermediate", "dense", "bias"): P("model"),
        ("output", "dense", "kernel"): P("model", None),
        ("output", "LayerNorm", "scale"): P(),
    }
    for rest, spec in expect.items():
        assert get(specs.meta_params, layer + rest) == spec, rest
        # Adam's first and second moments mirror the param paths, so they shard the same way.
        adam = specs.opt_state[1][0]
        assert get(adam.mu, layer + rest) == spec and get(adam.nu, layer + rest) == spec
    assert specs.meta_params["encoder"]["pooler"]["dense"]["kernel"] == P()
    assert specs.step == P() and specs.opt_state[1][0].count == P()

    fsdp = jax.tree.map(lambda s: s.spec, parallel.tree_shardings(abstract, mesh, "fsdp"))
    emb = fsdp.meta_params["encoder"]["embeddings"]
    assert emb["word_embeddings"]["embedding"] == P("data", None)  # [128, 32]: largest dim
    assert get(fsdp.meta_params, layer + ("intermediate", "dense", "kernel")) == P(None, "data")
    assert emb["token_type_embeddings"]["embedding"] == P(None, "data")  # [2, 32]
    assert fsdp.key == P()  # uint32[2]: 2 is not divisible by the data axis (4)
    assert parallel.leaf_spec("w", (6, 8), mesh, parallel.RULE_PRESETS["fsdp"]) == P(None, "data")


def test_specs_that_do_not_divide_fall_back_to_replication():
    mesh = mesh_of((2, 4))
    rules = [(r"a$", P("data", "model")), (r"b$", P(None, "model")), (r".*", P())]
    assert parallel.leaf_spec("x/a", (6, 6), mesh, rules) == P("data", None)  # 6 % 4
    assert parallel.leaf_spec("x/b", (5,), mesh, rules) == P(None)  # rank 1 < spec
    assert parallel.leaf_spec("x/a", (), mesh, rules) == P()
    with pytest.raises(ValueError, match="not divisible"):
        parallel.leaf_spec("x/a", (6, 6), mesh, rules, strict=True)
    with pytest.raises(ValueError, match="more entries than its rank"):
        parallel.leaf_spec("x/b", (5,), mesh, rules, strict=True)
    with pytest.raises(ValueError, match="no sharding rule matches"):
        parallel.leaf_spec("x/c", (4,), mesh, rules[:2])
    with pytest.raises(ValueError, match="not one of"):
        parallel.get_rules("zero3")
    # fsdp: no dimension divisible by the data axis -> replicated.
    assert parallel.leaf_spec("w", (3, 5), mesh_of((4, 2)), parallel.RULE_PRESETS["fsdp"]) == P()


def test_episodes_placement_and_meta_batch_check():
    mesh = mesh_of((4, 2))
    episodes = parallel.put_episodes(host_episodes(0), mesh)
    for leaf in jax.tree.leaves(episodes):
        assert leaf.sharding == parallel.episodes_sharding(mesh)
        assert leaf.addressable_shards[0].data.shape[0] == TASKS // 4
    assert parallel.process_task_slice(TASKS, mesh) == slice(0, TASKS)
    with pytest.raises(ValueError, match="multiple of 4 tasks"):
        parallel.check_meta_batch(6, mesh)
    with pytest.raises(ValueError, match="multiple of 4 tasks"):
        parallel.put_episodes(synthetic_episodes(np.random.default_rng(0), 6, 3, 1, 1, SEQ,
                                                 CFG.model.vocab_size), mesh)


def test_initialize_distributed_is_a_noop_for_one_process(monkeypatch):
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
                "JAXMAML_DISTRIBUTED"):
        monkeypatch.delenv(var, raising=False)
    assert parallel.initialize_distributed() is False
    assert parallel.initialize_distributed(num_processes=1) is False
    assert parallel.is_main_process()
    with pytest.raises(ValueError, match="coordinator_address"):
        parallel.initialize_distributed(num_processes=2, process_id=0)


# ------------------------------------------------------------------------------- parity


def continuous(metrics: dict) -> dict:
    """Metrics without accuracy: an argmax flips on a near-tie of logits (the zero-initialized
    head makes ties likely) under float reassociation, so it is not comparable at 1e-5."""
    return {k: v for k, v in jax.device_get(metrics).items() if k != "accuracy"}


def assert_close_scaled(actual, expected, rtol: float = 1e-5, floor: float = 1e-12):
    """Per leaf ``max|a - e| <= rtol * max|e| + floor``.

    Stricter than ``atol=1e-5`` for leaves far below 1 (meta-gradients of the attention
    query/key kernels are ~1e-6); ``floor`` only admits the rounding noise of leaves that
    are analytically zero (key-bias gradients, ~1e-14). Measured worst leaf: 3.7e-6
    relative (last LayerNorm bias, whose gradient is a cancelling sum over examples).
    """
    for (path, e), a in zip(jax.tree_util.tree_flatten_with_path(jax.device_get(expected))[0],
                            jax.tree.leaves(jax.device_get(actual))):
        e, a = np.asarray(e, np.float64), np.asarray(a, np.float64)
        err, scale = np.abs(a - e).max(initial=0.0), np.abs(e).max(initial=0.0)
        assert err <= rtol * scale + floor, (
            f"{jtree.path_str(path)}: max error {err:.3g} > {rtol} * {scale:.3g} + {floor}")


def check_parity(shape, rules, first_order):
    ref_metrics, ref_state = reference(first_order)
    run = sharded(shape, rules, first_order)
    for step, (m, r) in enumerate(zip(run["metrics"], ref_metrics)):
        chex.assert_trees_all_close(continuous(m), continuous(r), **TOL,
                                    custom_message=f"metrics of step {step}")
    chex.assert_trees_all_close(jax.device_get(run["state"]), ref_state, **TOL)
    # The run actually moved away from the initial params (the comparison is not vacuous).
    init = jax.device_get(jax.jit(init_fn)())
    assert not np.allclose(get(ref_state, QUERY), get(init, QUERY), atol=1e-4)


@pytest.mark.parametrize("shape,rules,first_order", DEFAULT_GRID)
def test_sharded_meta_steps_match_single_device(shape, rules, first_order):
    check_parity(shape, rules, first_order)


@pytest.mark.slow
@pytest.mark.parametrize("shape,rules,first_order", FULL_GRID)
def test_sharded_meta_steps_match_single_device_full_grid(shape, rules, first_order):
    check_parity(shape, rules, first_order)


def _to64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x, tree)


def check_meta_grads(shape, rules, first_order, task_chunk=0, float64=False):
    """Sharded meta-gradients == single device, with the same ``task_chunk`` (chunked ==
    all-at-once is tested exactly in float64 in test_maml). ``float64``: compare to 1e-12
    relative per leaf instead of float32's 1e-5."""
    with jax.enable_x64(float64):
        cfg = cfg_for(first_order).replace(task_chunk=task_chunk)
        make = init_fn
        if float64:
            cfg = cfg.replace(model=cfg.model.replace(dtype="float64"))
            make = lambda: _to64(init_fn())  # noqa: E731
        host = host_episodes(0)
        state = jax.device_put(jax.jit(make)(), jax.devices()[0])
        ref = jax.jit(lambda p, e: meta_grads(p, e, cfg))(state.meta_params, host)
        mesh = mesh_of(shape)
        state, shardings = parallel.create_state(make, mesh, rules)
        grads_fn = jax.jit(lambda p, e: meta_grads(p, e, cfg),
                           in_shardings=(shardings.meta_params,
                                         parallel.episodes_sharding(mesh)),
                           out_shardings=((parallel.replicated(mesh), parallel.replicated(mesh)),
                                          shardings.meta_params))
        (loss, metrics), grads = grads_fn(state.meta_params, parallel.put_episodes(host, mesh))
        (ref_loss, ref_metrics), ref_grads = jax.device_get(ref)
        chex.assert_trees_all_close((loss, continuous(metrics), grads),
                                    (ref_loss, continuous(ref_metrics), ref_grads), **TOL)
        if float64:
            assert_close_scaled(grads, ref_grads, rtol=1e-12, floor=1e-18)
        else:
            assert_close_scaled(grads, ref_grads)
        assert float(optax_global_norm(ref_grads)) > 1e-3  # not trivially zero


def test_meta_gradients_match_single_device():
    check_meta_grads((2, 4), "tensor", False)


def test_task_chunks_on_a_sharded_task_axis_match_single_device():
    """meta.task_chunk = the data-axis size (each chunk takes one task per device), sharded
    (4, 2) fsdp, == single device with all tasks at once (first order: the chunking and
    sharding logic is order-independent; second order is checked in test_maml). In float64: in float32 the two
    sum the same terms in different orders, which moves cancelling sums (the last LayerNorm
    bias, ~1e-4) by ~1e-9; in float64 they must agree to rounding."""
    with jax.enable_x64(True):
        cfg = cfg_for(True).replace(model=CFG.model.replace(dtype="float64"))
        params = _to64(init_meta_params(init_params(CFG.model, jax.random.key(0)), cfg,
                                       jax.random.key(1)))
        host = host_episodes(0)
        ref = jax.jit(lambda p, e: meta_grads(p, e, cfg))(params, host)
        mesh = mesh_of((4, 2))
        shard = parallel.tree_shardings(params, mesh, "fsdp")
        chunked = cfg.replace(task_chunk=4)
        out = jax.jit(lambda p, e: meta_grads(p, e, chunked),
                      in_shardings=(shard, parallel.episodes_sharding(mesh)))(
            jax.device_put(params, shard), parallel.put_episodes(host, mesh))
        chex.assert_trees_all_close(jax.device_get(out), jax.device_get(ref), atol=1e-12,
                                    rtol=0.0)
        assert float(optax_global_norm(ref[1])) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("shape,rules,first_order",
                         [(s, r, fo) for s in SHAPES for r in PRESETS for fo in (False, True)])
def test_meta_gradients_match_single_device_full_grid(shape, rules, first_order):
    """In float64: in float32 the (8, 1) mesh's all-reduce reassociates the last LayerNorm
    bias's cancelling sum (gradient ~9e-5) by ~2e-5 relative, beyond the scaled 1e-5 that
    every other mesh and leaf meets; in float64 every leaf must agree to 1e-12."""
    check_meta_grads(shape, rules, first_order, float64=True)


# ------------------------------------------------------------------- compiled shardings


@pytest.mark.parametrize("shape,rules", [((4, 2), "tensor"), ((8, 1), "fsdp")])
def test_compiled_step_uses_declared_shardings(shape, rules):
    run = sharded(shape, rules, False)
    mesh, shardings = run["mesh"], run["shardings"]
    abstract = jtree.abstract(run["state"], shardings)
    episodes = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.episodes_sharding(mesh)),
        host_episodes(0))
    compiled = run["step_fn"].lower(abstract, episodes).compile()
    (state_in, episodes_in), _ = compiled.input_shardings
    state_out, metrics_out = compiled.output_shardings

    def same(actual, expected, like):
        jax.tree.map(lambda a, e, x: a.is_equivalent_to(e, len(x.shape)) or pytest.fail(
            f"{a} != {e}"), actual, expected, like)

    same(state_in, shardings, abstract)
    same(state_out, shardings, abstract)
    same(episodes_in, jax.tree.map(lambda _: parallel.episodes_sharding(mesh), episodes),
         episodes)
    for s in jax.tree.leaves(metrics_out):
        assert s.is_fully_replicated

    # The live params really are split: each device holds only its shard.
    q = get(run["state"], QUERY)
    if rules == "tensor":
        assert q.sharding.spec == P(None, "model")
        assert {s.data.shape for s in q.addressable_shards} == {(32, 32 // 2)}
        mu = run["state"].opt_state[1][0].mu["encoder"]["encoder"]["layer"]["0"]
        assert mu["output"]["dense"]["kernel"].addressable_shards[0].data.shape == (64 // 2, 32)
    else:
        emb = run["state"].meta_params["encoder"]["embeddings"]["word_embeddings"]["embedding"]
        assert emb.sharding.spec == P("data", None)
        assert {s.data.shape for s in emb.addressable_shards} == {(128 // 8, 32)}
    assert not q.is_fully_replicated


# ------------------------------------------------------------------------- checkpoints


def test_checkpoint_saved_on_one_mesh_resumes_on_another(tmp_path):
    """Save after 1 step on (8, 1)/fsdp, restore on (4, 2)/tensor, finish: same as no break."""
    ocp = pytest.importorskip("orbax.checkpoint")
    ref_metrics, ref_state = reference(False)
    first = sharded((8, 1), "fsdp", False)  # compiled programs are shared with the parity runs
    second = sharded((4, 2), "tensor", False)
    mesh_a = first["mesh"]
    state, _ = parallel.create_state(init_fn, mesh_a, "fsdp")
    state, _ = first["step_fn"](state, parallel.put_episodes(host_episodes(0), mesh_a))
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(tmp_path / "ckpt", state)
        ckptr.wait_until_finished()
        target = jtree.abstract(jax.eval_shape(init_fn), second["shardings"])
        restored = ckptr.restore(tmp_path / "ckpt", target)
    assert isinstance(restored, type(state))
    jax.tree.map(lambda x, s: x.sharding.is_equivalent_to(s, x.ndim) or pytest.fail(str(x.sharding)),
                 restored, second["shardings"])
    chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(state))
    mesh_b = second["mesh"]
    for step in range(1, STEPS):
        restored, m = second["step_fn"](restored, parallel.put_episodes(host_episodes(step), mesh_b))
        chex.assert_trees_all_close(continuous(m), continuous(ref_metrics[step]), **TOL)
    chex.assert_trees_all_close(jax.device_get(restored), ref_state, **TOL)
