"""meta.lora_rank: meta-learned low-rank updates of the trained layers' weight matrices,
merged into plain BERT weights wherever a run is loaded (jaxmaml.meta.lora)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmaml.cli import main
from jaxmaml.data.synthetic import synthetic_episodes
from jaxmaml.meta import lora, metric
from jaxmaml.meta.config import OWN_META_GRAD, MetaConfig, OptimConfig
from jaxmaml.meta.options import ProtoNetOptions
from jaxmaml.meta.registry import LEARNERS
from jaxmaml.meta.outer import (init_meta_params, init_state, jit_meta_step, make_optimizer,
                                meta_loss)
from jaxmaml.models.bert import BertConfig, init_params
from jaxmaml.tree import path_str

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
MODEL = BertConfig.tiny(num_hidden_layers=2)
CFG = MetaConfig(model=MODEL, algorithm="protonet", way=3, pooling="mean",
                 protonet=ProtoNetOptions("cosine", normalize_features=True), outer_frozen_layers=1, lora_rank=2)


def _flat(tree) -> dict[str, np.ndarray]:
    return {path_str(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _episodes(tasks=2):
    return jax.tree.map(jnp.asarray, synthetic_episodes(np.random.default_rng(0), tasks, 3, 2,
                                                        2, 8, MODEL.vocab_size))


def _numpy_merge(encoder, factors, alpha=1.0) -> dict[str, np.ndarray]:
    """An independent merge: W + alpha A @ B in float64 at each factor's kernel path."""
    flat = {p: x.astype(np.float64) for p, x in _flat(encoder).items()}
    for key, ab in factors.items():
        path = key.replace("__", "/")
        flat[path] = flat[path] + alpha * np.asarray(ab["a"], np.float64) @ np.asarray(
            ab["b"], np.float64)
    return flat


def test_factors_cover_the_trained_layers_kernels_and_start_at_the_pretrained_encoder():
    encoder = init_params(MODEL, jax.random.key(0))
    factors = lora.init_lora(encoder, CFG, jax.random.key(1))
    expected = {p for p in _flat(encoder) if p.startswith("encoder/layer/1/")
                and p.endswith("kernel")}  # layer 0 is outer-frozen; not the pooler
    assert {k.replace(lora.SEP, "/") for k in factors} == expected and len(expected) == 6
    for k, ab in factors.items():
        n_in, n_out = _flat(encoder)[k.replace(lora.SEP, "/")].shape
        assert ab["a"].shape == (n_in, 2) and ab["b"].shape == (2, n_out)
        assert not np.any(np.asarray(ab["b"]))
    merged = lora.merged_meta_params({"encoder": encoder, "lora": factors})
    assert set(merged) == {"encoder"}
    for p, x in _flat(merged["encoder"]).items():  # B = 0: bit-identical
        np.testing.assert_array_equal(x, _flat(encoder)[p])


def test_meta_steps_move_only_the_factors_and_the_loss_is_protonet_on_the_merged_encoder():
    encoder = init_params(MODEL, jax.random.key(0))
    before = _flat(encoder)  # copies: the meta-step donates the state's buffers
    optimizer = make_optimizer(OptimConfig(name="adamw", lr=1e-2, weight_decay=0.1))
    state = init_state(init_meta_params(encoder, CFG, jax.random.key(1)), optimizer,
                       jax.random.key(2))
    step = jit_meta_step(CFG, optimizer)
    episodes = _episodes()
    for _ in range(3):
        state, _ = step(state, episodes)
    mp = jax.device_get(state.meta_params)
    for p, x in _flat(mp["encoder"]).items():  # weight decay did not move W either
        np.testing.assert_array_equal(x, before[p])
    assert all(np.any(np.asarray(ab["b"])) for ab in mp["lora"].values())

    # the meta-loss == the mean ProtoNet loss of an encoder merged without jaxmaml.meta.lora
    flat = _numpy_merge(mp["encoder"], mp["lora"])
    leaves = jax.tree_util.tree_flatten_with_path(mp["encoder"])[0]
    merged = jax.tree_util.tree_unflatten(
        jax.tree.structure(mp["encoder"]),
        [jnp.asarray(flat[path_str(p)], jnp.float32) for p, _ in leaves])
    ref = np.mean([float(metric.protonet_task_loss(
        {"encoder": merged}, jax.tree.map(lambda x: x[t], episodes), CFG)[0]) for t in range(2)])
    loss, _ = meta_loss(mp, episodes, CFG)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    grads = jax.grad(lambda m: meta_loss(m, episodes, CFG)[0])(mp)
    assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(grads["encoder"]))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("lora") / "run"
    assert main(["train", str(TINY), "--out", str(run), "--no-progress",
                 "--set", "meta.algorithm=protonet", "--set", "meta.protonet.distance=cosine",
                 "--set", "meta.protonet.normalize_features=true", "--set", "meta.lora_rank=2",
                 "--set", "meta.outer_frozen_layers=1",
                 "--set", "train.steps=4", "--set", "train.eval_every=0",
                 "--set", "train.save_every=4"]) == 0
    return run


def test_a_run_loads_merged_with_wise_alpha_scaling_the_update(lora_run, tmp_path):
    from jaxmaml.run.checkpoint import RunCheckpoints
    from jaxmaml.run.state import abstract_state, initial_encoder
    from jaxmaml.run.load import load_export, restore_meta_params, run_config

    cfg = run_config(lora_run, ["train.wise_alpha=0.5"])
    theta_0 = initial_encoder(cfg)
    with RunCheckpoints(lora_run / "checkpoints", read_only=True) as ckpts:
        raw = ckpts.restore(abstract_state(cfg, theta_0), "latest").state.meta_params
    assert set(raw) == {"encoder", "lora"}  # checkpoints keep the factors
    assert any(np.any(np.asarray(ab["b"])) for ab in raw["lora"].values())
    _, half = restore_meta_params(cfg, lora_run, "latest", theta_0)
    assert set(half) == {"encoder"}
    expected = _numpy_merge(theta_0, raw["lora"], alpha=0.5)
    moved = 0
    for p, x in _flat(half["encoder"]).items():
        np.testing.assert_allclose(x, expected[p], rtol=1e-6, atol=1e-7)
        moved += int(not np.array_equal(x, _flat(theta_0)[p]))
    assert moved == 6  # the kernels of the top layer, nothing else

    out = tmp_path / "hf"
    assert main(["export", str(lora_run), str(out), "--checkpoint", "latest",
                 "--set", "train.wise_alpha=0.5"]) == 0
    card = (out / "README.md").read_text()
    assert "rank-2 updates `A @ B`" in card and "WiSE-FT" in card
    exported = _flat(load_export(out).meta_params["encoder"])
    for p, x in _flat(half["encoder"]).items():
        np.testing.assert_allclose(exported[p], x, rtol=1e-6, atol=1e-7)


def test_lora_rank_errors_and_the_learners_it_excludes():
    assert set(OWN_META_GRAD) == {n for n, l in LEARNERS.items() if l.meta_grad is not None}
    with pytest.raises(ValueError, match="lora_rank=-1 must be >= 0"):
        CFG.replace(lora_rank=-1)
    with pytest.raises(ValueError, match="remove meta.outer_regex"):
        CFG.replace(outer_regex="encoder/.*bias")
    with pytest.raises(ValueError, match="not 'reptile'"):
        MetaConfig(model=MODEL, algorithm="reptile", lora_rank=2)


def test_meta_val_scores_the_merged_encoder():
    """evaluate() on a training state's meta_params (factors unmerged, as meta-val passes
    them) == on the merged encoder, != on the encoder alone: evaluation precomputes every
    layer of a metric learner from meta_params["encoder"], which must be the merged one."""
    from eval_cases import CLASSES, VOCAB, eval_pool

    from jaxmaml.run.protocol import evaluate

    model = BertConfig.tiny(vocab_size=VOCAB)
    cfg = CFG.replace(model=model)
    encoder = init_params(model, jax.random.key(0))
    factors = lora.init_lora(encoder, cfg, jax.random.key(1))
    factors = {k: {**ab, "b": jax.random.normal(jax.random.fold_in(jax.random.key(3), i),
                                                 ab["b"].shape)}
               for i, (k, ab) in enumerate(sorted(factors.items()))}
    raw = {"encoder": encoder, "lora": factors}

    def acc(mp):
        return evaluate(mp, cfg, eval_pool(), CLASSES, [(3, 1, 3)], episodes=20,
                        methods=("meta_learned",))[0]["results"]["meta_learned"]["mean"]

    assert acc(raw) == acc(lora.merged_meta_params(raw)) != acc({"encoder": encoder})
