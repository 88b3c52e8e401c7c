"""Multi-process sharded meta-training on one machine: JAX's multi-controller runtime on CPU.

Each process owns ``--local-devices`` CPU devices; together they form one global mesh.
Every process samples only its own slice of the task axis and feeds it to
``parallel.put_episodes``; gradients are all-reduced across processes (gloo on CPU, NCCL
on GPU, ICI/DCN on TPU) inside the one compiled meta-step.

Launch two processes x 4 devices on localhost (any free port)::

    for i in 0 1; do
      .venv/bin/python benchmarks/multihost_demo.py --process-id $i --num-processes 2 \\
          --coordinator localhost:12355 --local-devices 4 --mesh 8 1 --rules fsdp \\
          --out /tmp/mh & done; wait

and compare with one process owning all 8 devices::

    .venv/bin/python benchmarks/multihost_demo.py --local-devices 8 --mesh 8 1 --out /tmp/sh

Process 0 writes ``OUT/result.json`` (per-step losses) and ``OUT/params.npz`` (the final
meta-params, gathered from all processes). ``tests/parallel/test_multihost.py`` runs exactly this.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

TASKS, STEPS, SEQ, WAY, SHOT, QUERY = 8, 3, 16, 3, 2, 2


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--coordinator", default=None, help="host:port of process 0")
    p.add_argument("--local-devices", type=int, default=None,
                   help="CPU devices per process (sets XLA_FLAGS before jax is imported)")
    p.add_argument("--mesh", type=int, nargs=2, default=[-1, 1], metavar=("DATA", "MODEL"))
    p.add_argument("--rules", default="fsdp")
    p.add_argument("--first-order", action="store_true")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def setup():
    """The tiny experiment: (cfg, optimizer, init_fn, host_episodes(step) -> all tasks)."""
    import jax
    import numpy as np

    from jaxmaml.data.synthetic import synthetic_episodes
    from jaxmaml.meta.config import MetaConfig, OptimConfig
    from jaxmaml.meta.outer import make_optimizer, new_state
    from jaxmaml.models.bert import BertConfig, init_params

    cfg = MetaConfig(model=BertConfig.tiny(max_position_embeddings=SEQ), way=WAY,
                     num_inner_steps=2, inner_lr=0.1, pooling="mean")
    optimizer = make_optimizer(OptimConfig(lr=1e-3))

    def init_fn():
        encoder = init_params(cfg.model, jax.random.key(0))
        return new_state(encoder, cfg, optimizer, jax.random.key(1))

    def host_episodes(step: int):
        # Every process draws the same global batch here for a checkable demo; a real
        # sampler draws only the process's own tasks (seeded by step and task index).
        return synthetic_episodes(np.random.default_rng(100 + step), TASKS, WAY, SHOT, QUERY,
                                  SEQ, cfg.model.vocab_size)

    return cfg, optimizer, init_fn, host_episodes


def train(mesh, rules: str, first_order: bool, steps: int):
    """Run ``steps`` sharded meta-steps on ``mesh``; return (losses, final state)."""
    import jax

    from jaxmaml import parallel

    cfg, optimizer, init_fn, host_episodes = setup()
    state, shardings = parallel.create_state(init_fn, mesh, rules)
    step_fn = parallel.jit_sharded_meta_step(cfg.replace(first_order=first_order), optimizer,
                                             mesh, shardings)
    mine = parallel.process_task_slice(TASKS, mesh)
    losses = []
    for step in range(steps):
        local = jax.tree.map(lambda x: x[mine], host_episodes(step))
        state, metrics = step_fn(state, parallel.put_episodes(local, mesh, TASKS))
        losses.append(metrics["loss"])
    return [float(x) for x in jax.device_get(losses)], state


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.local_devices:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform"
                                   f"_device_count={args.local_devices}").strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from jaxmaml import parallel

    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    mesh = parallel.make_mesh(args.mesh)
    print(f"process {jax.process_index()}/{jax.process_count()}: "
          f"{jax.local_device_count()} local of {jax.device_count()} devices, mesh "
          f"{dict(mesh.shape)}, tasks {parallel.process_task_slice(TASKS, mesh)}", flush=True)
    losses, state = train(mesh, args.rules, args.first_order, args.steps)
    params = multihost_utils.process_allgather(state.meta_params, tiled=True)
    if parallel.is_main_process():
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(x)
                for path, x in jax.tree_util.tree_flatten_with_path(params)[0]}
        np.savez(out / "params.npz", **flat)
        (out / "result.json").write_text(json.dumps(
            {"losses": losses, "process_count": jax.process_count(),
             "device_count": jax.device_count(), "mesh": dict(mesh.shape)}))
    print(f"process {jax.process_index()}: losses {losses}", flush=True)
    multihost_utils.sync_global_devices("done")  # nobody exits while others still need it
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
