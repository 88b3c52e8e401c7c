"""The benchmark runner: JSON fields on a tiny grid, FLOP counts vs a hand count, the
PyTorch peer computing the same meta-loss, and CLI/grid-file handling."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmaml.bench import grid as bench
from jaxmaml.bench.flops import count_flops, forward_matmul_flops, inner_step_matmul_flops
from jaxmaml.bench.point import BenchPoint, make_episodes, resolve_model
from jaxmaml.meta import inner
from jaxmaml.meta.config import MetaConfig
from jaxmaml.models.bert import BertConfig, init_params

TINY = dict(model="tiny", way=3, shot=2, query=2, seq_len=16, tasks=2, warmup=1, reps=2)
ROW_FIELDS = {
    # settings
    "model", "way", "shot", "query", "seq_len", "tasks", "inner_steps", "order", "remat",
    "adapt", "adapt_top_k", "embedding_rows", "task_chunk", "second_order", "dtype", "backend",
    # measurements
    "meta_steps_per_s", "tasks_per_s", "tokens_per_s", "real_tokens_per_s", "tokens_counted",
    "compile_s", "lower_s", "peak_bytes", "rss_peak_bytes", "flops_per_step",
    "matmul_flops_per_step", "xla_cost_flops", "achieved_flops_per_s",
    "matmul_peak_flops_per_s", "utilization", "loss_first_step", "step_time_s",
    # environment
    "jax", "jaxlib", "flax", "python", "device_kind", "device_count", "platform",
}


@pytest.fixture(scope="module")
def tiny_rows():
    points = bench.expand({**TINY, "inner_steps": [1, 2], "order": "both"})
    return bench.run_grid(points)


def test_tiny_grid_rows_have_every_field(tiny_rows):
    assert len(tiny_rows) == 4
    for row in tiny_rows:
        assert not row.get("failed"), row.get("failed")
        missing = ROW_FIELDS - set(row)
        assert not missing, f"row lacks {sorted(missing)}"
        json.loads(json.dumps(row, default=str))
        assert row["meta_steps_per_s"] > 0 and row["compile_s"] > 0
        assert row["peak_bytes"] > 0 and 0 < row["utilization"] < 1.5
        assert row["tasks_per_s"] == pytest.approx(row["tasks"] * row["meta_steps_per_s"])
    second = [r for r in tiny_rows if r["order"] == "second"]
    assert all("second_over_first_time" in r and "second_over_first_peak_bytes" in r
               for r in second)


def test_flops_scale_with_inner_steps_and_order(tiny_rows):
    """Each inner step adds the same matmul FLOPs (scan bodies counted S times, unlike
    XLA's cost analysis); second order costs more than first order."""
    by = {(r["inner_steps"], r["order"]): r["matmul_flops_per_step"] for r in tiny_rows}
    for order in ("second", "first"):
        assert by[(2, order)] > by[(1, order)]
    assert by[(1, "second")] > by[(1, "first")] and by[(2, "second")] > by[(2, "first")]
    # first order: one more inner step = one more support forward+backward per task
    p = BenchPoint.of(**TINY)
    per_step = inner_step_matmul_flops(BertConfig.tiny(), p.meta.way * p.shot, p.seq_len, p.meta.way)
    assert by[(2, "first")] - by[(1, "first")] == pytest.approx(p.tasks * per_step, rel=1e-9)


def _one_inner_step(config: BertConfig, way=5, shot=5, seq_len=16):
    cfg = MetaConfig(model=config, way=way, num_inner_steps=1)
    point = BenchPoint.of(model="tiny", way=way, shot=shot, query=1, seq_len=seq_len, tasks=1)
    support = jax.tree.map(lambda x: jnp.asarray(x[0]), make_episodes(point, config).support)
    params = {"encoder": init_params(config, jax.random.key(0)),
              "head": {"kernel": jnp.zeros((config.hidden_size, way)), "bias": jnp.zeros(way)}}
    return jax.grad(inner.support_loss_fn(support, cfg)), params, way * shot


def test_jaxpr_matmul_count_equals_hand_formula():
    """Hand count: 3 x (per layer 8LH^2 + 4L^2H + 4LHI, plus head 2H*way) per example."""
    config = BertConfig.tiny()
    grad_fn, params, n = _one_inner_step(config)
    L, H, I, way = 16, config.hidden_size, config.intermediate_size, 5
    hand = 3 * n * (config.num_hidden_layers * (8 * L * H * H + 4 * L * L * H + 4 * L * H * I)
                    + 2 * H * way)
    assert inner_step_matmul_flops(config, n, L, way) == hand
    assert count_flops(grad_fn, params).matmul == hand


def test_xla_cost_analysis_of_inner_step_matches_hand_count():
    """XLA's FLOPs for one inner step (forward+backward on the support set) are within 10%
    of the matmul hand count. ReLU: XLA expands ``erf`` (exact GELU) into a ~60-FLOP
    polynomial per element, which at hidden 32 alone adds ~15% (the jaxpr test above
    covers the GELU model's matmuls exactly)."""
    config = BertConfig.tiny(hidden_act="relu")
    grad_fn, params, n = _one_inner_step(config)
    cost = jax.jit(grad_fn).lower(params).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    hand = inner_step_matmul_flops(config, n, 16, 5)
    assert cost["flops"] == pytest.approx(hand, rel=0.10)
    assert cost["flops"] >= hand  # matmuls are a lower bound: elementwise ops add a little


def test_forward_is_a_third_of_a_step():
    config = BertConfig.tiny()
    assert 3 * forward_matmul_flops(config, 7, 16, 4) == inner_step_matmul_flops(config, 7, 16, 4)


def test_grid_file_expands_products(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\ndefaults: {model: tiny, seq_len: 16}\npoints:\n"
                    "  - {inner_steps: [1, 2, 3], order: both}\n"
                    "  - {backend: torch, torch_mode: [func_vmap, loop]}\n")
    name, points = bench.load_grid(grid)
    assert name == "g" and len(points) == 8
    assert {p.seq_len for p in points} == {16}
    assert {(p.meta.num_inner_steps, p.order) for p in points[:6]} == {
        (s, o) for s in (1, 2, 3) for o in ("second", "first")}


@pytest.mark.parametrize("entry, message", [
    ({"modle": "tiny"}, "unknown bench setting"),
    ({"order": "third"}, "order='third'"),
    ({"remat": "some"}, "remat='some'"),
    ({"order": "second", "remat": "full"}, "add second_order: autodiff"),
    ({"second_order": "hessian"}, "second_order='hessian'"),
    ({"model": "/no/such/dir"}, "local Hugging Face BERT directory"),
])
def test_bad_settings_say_how_to_fix(entry, message):
    with pytest.raises(ValueError, match=message):
        bench.expand(entry)


def test_second_order_axis_dedupes_first_order_and_ratios_match_it():
    """``second_order`` is moot for first-order points: one first-order point per setting,
    and both second-order variants get their ratios against it."""
    points = bench.expand({**TINY, "order": "both", "second_order": ["hvp", "autodiff"]})
    assert [(p.order, p.meta.second_order) for p in points] == [
        ("second", "hvp"), ("second", "autodiff"), ("first", "hvp")]
    rows = [{**p.settings(), "step_time_s": t, "peak_bytes": b}
            for p, t, b in zip(points, (3.0, 6.0, 1.0), (20, 80, 10))]
    bench.add_ratios(rows)
    assert [r.get("second_over_first_time") for r in rows] == [3.0, 6.0, None]
    assert [r.get("second_over_first_peak_bytes") for r in rows] == [2.0, 8.0, None]


def test_seq_len_beyond_positions_is_rejected():
    with pytest.raises(ValueError, match="max_position_embeddings"):
        make_episodes(BenchPoint.of(model="tiny", seq_len=65), BertConfig.tiny())


@pytest.mark.slow  # ~55 s: compiles and times a full point via the CLI
def test_cli_json_and_results_files(tmp_path, capsys):
    # inner_steps 0: the CLI plumbing is under test here, not the (slow to compile) loop
    rc = bench.main(["--model", "tiny", "--way", "2", "--shot", "1", "--query", "1",
                     "--seq-len", "8", "--tasks", "2", "--inner-steps", "0", "--order", "both",
                     "--reps", "1", "--warmup", "1", "--json", "--out", str(tmp_path),
                     "--name", "t"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    rows, summary = lines[:-1], lines[-1]["summary"]
    assert [r["order"] for r in rows] == ["second", "first"]
    assert summary and "second_over_first_time" in summary[0]
    for name in ("t.jsonl", "t.md", "t_memory.png", "t_second_over_first.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 2


def test_cli_rejects_bad_grid(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("points: 3\n")
    assert bench.main(["--grid", str(bad)]) == 2
    assert "points:" in capsys.readouterr().err


@functools.lru_cache(maxsize=2)
def _jax_meta_step(order: str):
    """(meta-loss, HF state dict after one step) of our meta-step on the peer test point."""
    from jaxmaml.bench.point import BENCH_OPTIM
    from jaxmaml.meta.outer import jit_meta_step, make_optimizer, new_state
    from jaxmaml.models.hf import to_hf_state_dict

    point = BenchPoint.of(**{**TINY, "inner_steps": 1, "order": order})
    params, config = resolve_model(point.model, point.dtype, point.seed)
    cfg = point.meta_config(config)
    opt = make_optimizer(BENCH_OPTIM)
    state = new_state(jax.tree.map(jnp.array, params), cfg, opt, jax.random.key(point.seed))
    state, metrics = jit_meta_step(cfg, opt)(state, jax.device_put(make_episodes(point, config)))
    return float(metrics["loss"]), to_hf_state_dict(state.meta_params["encoder"])


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["func_vmap", "loop"])
@pytest.mark.parametrize("order", ["second", "first"])
def test_torch_peer_computes_the_same_meta_loss_and_update(mode, order):
    """Same weights, episodes and inner loop: the peer's meta-loss equals ours, and one
    Adam step moves the weights the same way (so the meta-gradient agrees too)."""
    pytest.importorskip("torch")
    from jaxmaml.bench.torch_peer import TorchMAML, build_model, to_torch_batch
    from jaxmaml.models.hf import to_hf_state_dict

    point = BenchPoint.of(**{**TINY, "inner_steps": 1, "order": order, "backend": "torch",
                          "torch_mode": mode})
    params, config = resolve_model(point.model, point.dtype, point.seed)
    episodes = make_episodes(point, config)
    model = build_model(params, config, 1)
    runner = TorchMAML(model, point)
    torch_loss = runner.step(to_torch_batch(episodes))

    jax_loss, ours = _jax_meta_step(order)
    assert jax_loss == pytest.approx(torch_loss, abs=1e-5)
    before = to_hf_state_dict(params)
    # Adam's first step moves each weight by ~lr * sign(grad): compare the moves.
    for name, p in model.named_parameters():
        delta_t = p.detach().numpy() - before[name]
        delta_j = ours[name] - before[name]
        np.testing.assert_allclose(delta_t, delta_j, atol=2e-6, err_msg=name)


def test_profile_step_sums_op_time_by_kind(tmp_path):
    """benchmarks/profile_step.py: fusions are grouped without their numeric suffix and the
    executor / Python frames that enclose the ops are not counted."""
    import gzip
    import json as _json

    from bench_scripts import load_script

    mod = load_script("profile_step")
    events = [{"ph": "X", "name": "ynn_fusion.3", "dur": 5}, {"ph": "X", "name": "ynn_fusion", "dur": 2},
              {"ph": "X", "name": "copy_bitcast_fusion.111", "dur": 7},
              {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 100},
              {"ph": "X", "name": "$api.py:1 block_until_ready", "dur": 100},
              {"ph": "i", "name": "ynn_fusion.9", "dur": 50}]
    trace = tmp_path / "t.trace.json.gz"
    with gzip.open(trace, "wt") as f:
        _json.dump({"traceEvents": events}, f)
    total, calls = mod.op_times(str(trace))
    assert dict(total) == {"ynn_fusion": 7, "copy_bitcast_fusion": 7}
    assert dict(calls) == {"ynn_fusion": 2, "copy_bitcast_fusion": 1}
