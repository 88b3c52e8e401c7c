"""The meta-training loop: composition of config, data, sharded state, meta-step, checkpoints.

Run directory layout (``RUN_DIR``)::

    config.yaml         the resolved experiment config
    split.json          the class-disjoint split {"train", "val", "test"}
    metrics.jsonl       {"step", "loss", "accuracy", "grad_norm"} per logged window and
                        {"step", "val_accuracy", "val_ci95", "val_episodes"} per meta-val
    timing.jsonl        {"step", "seconds", "tasks_per_s"} (kept apart: not reproducible)
    checkpoints/        Orbax steps (state + config + sampler state)
    learning_curves.png
    train_summary.json  final step, best meta-val step and accuracy

Resuming: the same command restores the latest readable checkpoint (falling back past a
corrupt one), drops ``metrics.jsonl`` lines past its step, and continues; the meta-step is
deterministic and the episodes are a pure function of ``(seed, step)``, so a resumed run writes the same metrics and ends with bit-identical
params. Metrics stay on device and are fetched at "flush" steps: multiples of
``log_every``, and every step where meta-val runs or a checkpoint is saved (a resumed run
therefore starts on a flush boundary and its windows match an uninterrupted run's).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmaml import parallel
from jaxmaml.atomic_file import write_json_atomically
from jaxmaml.data.episodes import EpisodeSampler, gather, with_label_rows
from jaxmaml.meta.encoding import precompute_bottom
from jaxmaml.meta.outer import make_optimizer
from jaxmaml.run.checkpoint import RunCheckpoints
from jaxmaml.run.config import ConfigError, dump_yaml, ExperimentConfig, to_dict
from jaxmaml.run.config_load import from_dict
from jaxmaml.run.data import (check_eval_settings, class_texts, data_name, load_data,
                              mixture_sampler, SPLIT_FILE, unknown_token_rate)
from jaxmaml.run.evaluate import meta_val_by_source as evaluate_sources
from jaxmaml.run.paths import created_dirs, remove_created_dirs
from jaxmaml.run.plots import plot_learning_curves, read_metrics
from jaxmaml.run.protocol import evaluate
from jaxmaml.run.runlock import LOCK_FILE, RunLock
from jaxmaml.run.state import initial_encoder, state_init_fn
from jaxmaml.run.stopping import (StopRequest, TrainingDiverged,  # noqa: F401 -- re-exported
                                  TrainingInterrupted, diverged)
from jaxmaml.tree import abstract
from jaxmaml.types import Episodes

METRICS_FILE = "metrics.jsonl"
TIMING_FILE = "timing.jsonl"
# Keys that may differ when re-running a command on an existing run directory.
RESUMABLE_CHANGES = {("train", "steps"), ("train", "async_checkpointing"), ("train", "out"),
                     ("train", "wise_alpha")}  # applied when loading, never in training
# Keys that may change on resume with a printed note: the usual fixes after a divergence.
# None changes the state's structure (the Optax chain and the params stay the same shape).
TUNABLE_ON_RESUME = {("optim", "lr"), ("optim", "weight_decay"), ("optim", "final_lr_fraction")}
UNK_WARN_RATE = 0.05  # warn when more than this fraction of text tokens map to [UNK]


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns. ``state`` is the final (device) MetaState."""

    run_dir: Path
    state: Any
    start_step: int
    final_step: int
    best_step: int | None
    best_val_accuracy: float | None
    compiles: int


def _check_resumable(run_dir: Path, cfg: ExperimentConfig) -> list[str]:
    """Refuse a config that cannot continue the run in ``run_dir``.

    Returns the changed :data:`TUNABLE_ON_RESUME` keys (``"optim.lr: 0.001 -> 0.0003"``),
    which are allowed: lowering a learning rate is how a diverged run is resumed.
    """
    saved_file = run_dir / "config.yaml"
    if not saved_file.exists():
        return []
    import yaml

    saved = to_dict(from_dict(yaml.safe_load(saved_file.read_text())))
    new = to_dict(cfg)
    changed = [(s, k) for s in new if isinstance(new[s], dict)
               for k in sorted(set(saved[s]) | set(new[s]))
               if saved[s].get(k) != new[s].get(k) and (s, k) not in RESUMABLE_CHANGES]
    text = {c: f"{c[0]}.{c[1]}: {saved[c[0]].get(c[1])!r} -> {new[c[0]].get(c[1])!r}"
            for c in changed}
    diffs = [text[c] for c in changed if c not in TUNABLE_ON_RESUME]
    if diffs:
        allowed = ", ".join(f"{s}.{k}" for s, k in sorted(TUNABLE_ON_RESUME))
        raise ConfigError(f"{run_dir} holds a run with a different config ({'; '.join(diffs)}). "
                          f"Resume it with the same config (only {allowed} may change), or "
                          "pass a new --out RUN_DIR.")
    return [text[c] for c in changed]


def _finite_or_null(row: dict) -> dict:
    """``row`` with NaN/inf floats as ``None``, so every line stays valid JSON."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in row.items()}


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the complete lines with ``step <= last_step`` (resume consistency)."""
    if not path.exists():
        return
    import json

    keep = [json.dumps(r) for r in read_metrics(path) if r.get("step", 0) <= last_step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    tmp.replace(path)


def _append(path: Path, row: dict) -> None:
    import json

    with open(path, "a") as f:
        f.write(json.dumps(_finite_or_null(row), allow_nan=False) + "\n")
        f.flush()


@jax.jit
def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
                              if jnp.issubdtype(x.dtype, jnp.floating)]))


def _episode_fn(cfg: ExperimentConfig, data, split, mesh, encoder):
    """``(sampler, step -> device Episodes)`` for this process's slice of the tasks.

    With ``meta.outer_frozen_layers`` the never-trained bottom is run once over the
    meta-train pool and episodes carry it as ``Examples.bottom``. With
    ``train.label_texts`` each task's support ends with its classes' label texts
    (:func:`jaxmaml.data.episodes.with_label_rows`).
    """

    t = cfg.train
    if cfg.data.sources:  # each task from one source, chosen by weight
        sampler = mixture_sampler(cfg, data, split)
    else:
        sampler = EpisodeSampler(data, list(split["train"]), cfg.meta.way, t.shot, t.query,
                                 t.tasks, t.seed)
    tasks = parallel.process_task_slice(t.tasks, mesh)
    rows = sampler.example_indices()
    position = np.full(len(data.labels), -1, np.int64)
    position[rows] = np.arange(len(rows))
    arrays = {"input_ids": data.input_ids[rows], "attention_mask": data.attention_mask[rows]}
    if t.label_texts:
        ids, mask = class_texts(cfg, data.class_names, data.input_ids.shape[1],
                                source=cfg.data.source)
        label_rows = len(rows) + np.arange(len(data.class_names))
        arrays = {"input_ids": np.concatenate([arrays["input_ids"], ids]),
                  "attention_mask": np.concatenate([arrays["attention_mask"], mask])}
    if cfg.meta.outer_frozen_layers:
        arrays["bottom"] = precompute_bottom(encoder, cfg.meta, arrays["input_ids"],
                                            arrays["attention_mask"])

    def host(step: int) -> Episodes:
        ix = sampler.indices(step, tasks)
        ix = ix._replace(support_idx=position[ix.support_idx], query_idx=position[ix.query_idx])
        return gather(arrays, with_label_rows(ix, label_rows) if t.label_texts else ix)

    return sampler, (lambda step: parallel.put_episodes(host(step), mesh, t.tasks))


def train(cfg: ExperimentConfig, run_dir: str | Path, progress: bool = True) -> TrainResult:
    """Meta-train ``cfg`` into ``run_dir``, resuming from its latest checkpoint if any.

    The run directory is locked for the whole run (:class:`~jaxmaml.run.runlock.RunLock`): a
    second ``train`` on it fails at once instead of interleaving its writes.

    Raises :class:`TrainingDiverged` on a NaN/inf meta-loss and
    :class:`TrainingInterrupted` on Ctrl-C (earlier checkpoints untouched in both cases).
    """

    run_dir = Path(run_dir)
    if not parallel.is_main_process():
        return _train(cfg, run_dir, progress)
    created = created_dirs(run_dir)
    try:
        with RunLock(run_dir):
            return _train(cfg, run_dir, progress)
    except BaseException:
        # A run that failed its start-up checks leaves no folder it created behind (the
        # run directory held only the lock; its new parents are empty).
        remove_created_dirs(created, keep=frozenset({LOCK_FILE}))
        raise


def _start_checks(cfg: ExperimentConfig, run_dir: Path, data, split) -> None:
    """What can be told before the first step: eval settings the data cannot supply, a
    tokenizer that does not cover the text, config changes allowed on resume."""
    import sys


    check_eval_settings(cfg, data, split)
    rate = unknown_token_rate(cfg, data)
    if rate > UNK_WARN_RATE and parallel.is_main_process():
        print(f"warning: {rate:.0%} of the text tokens of data.source={cfg.data.source!r} are "
              "[UNK] for this tokenizer; the model sees mostly unknown tokens. Use a tokenizer "
              "whose vocabulary covers this text (model.tokenizer, e.g. minilm) or check "
              "data.text_column.", file=sys.stderr, flush=True)


def _train(cfg: ExperimentConfig, run_dir: Path, progress: bool) -> TrainResult:
    """A run in its steps: checks and data, the start state (fresh or resumed), the loop,
    the summary."""
    t = cfg.train
    tuned = _check_resumable(run_dir, cfg)
    mesh = parallel.make_mesh(cfg.parallel.mesh)
    parallel.check_meta_batch(t.tasks, mesh)
    data, split = load_data(cfg)
    _start_checks(cfg, run_dir, data, split)
    if parallel.is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_yaml(cfg))
        write_json_atomically(run_dir / SPLIT_FILE, {**split, "source": data_name(cfg)})
    optimizer = make_optimizer(cfg.optim)
    ckpts = RunCheckpoints(run_dir / "checkpoints", keep=t.keep, async_save=t.async_checkpointing)
    state, shardings, start, sampler, next_episodes = _start_state(
        cfg, run_dir, data, split, mesh, optimizer, ckpts, tuned)
    meta_step = parallel.jit_sharded_meta_step(cfg.meta, optimizer, mesh, shardings)
    loop = _Loop(cfg, run_dir, data, split, ckpts, sampler, progress)
    state, best_step, kept = loop.run(state, start, meta_step, next_episodes)
    return _finish(cfg, run_dir, state, start, best_step, kept, meta_step._cache_size())


def _start_state(cfg: ExperimentConfig, run_dir: Path, data, split, mesh, optimizer,
                 ckpts: RunCheckpoints, tuned: list[str]):
    """``(state, state shardings, start step, sampler, step -> device Episodes)``: the
    latest readable checkpoint restored straight into its shards, else a fresh state
    created in them; metrics lines past the start step dropped."""
    encoder = initial_encoder(cfg)
    init_fn = state_init_fn(cfg, optimizer)
    shapes = jax.eval_shape(init_fn, encoder)
    shardings = parallel.tree_shardings(shapes, mesh, cfg.parallel.rules)
    sampler, next_episodes = _episode_fn(cfg, data, split, mesh, encoder)
    start = 0
    if ckpts.latest_step() is not None:
        restored = ckpts.restore(abstract(shapes, shardings), fallback=True)
        state, start = restored.state, restored.step
        sampler.load_state_dict(restored.sampler)
        if parallel.is_main_process():
            print(f"resuming {run_dir} from step {start}"
                  + (f" with changed {'; '.join(tuned)}" if tuned else ""), flush=True)
    else:
        state = jax.jit(init_fn, out_shardings=shardings)(encoder)
    if parallel.is_main_process():
        _truncate_metrics(run_dir / METRICS_FILE, start)
        _truncate_metrics(run_dir / TIMING_FILE, start)
    return state, shardings, start, sampler, next_episodes


class _Loop:
    """The meta-training loop of one run: steps, flush windows, meta-val, checkpoints."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, data, split, ckpts: RunCheckpoints,
                 sampler, progress: bool):
        self.cfg, self.run_dir, self.data, self.split = cfg, run_dir, data, split
        self.ckpts, self.sampler, self.progress = ckpts, sampler, progress
        self.main = parallel.is_main_process()
        self.config_dict = to_dict(cfg)
        self.best_val = ckpts.best_value()

    def is_flush(self, s: int) -> tuple[bool, bool, bool]:
        """``(flush, evaluates, saves)`` after step ``s``."""
        t = self.cfg.train
        evals = bool(t.eval_every) and (s % t.eval_every == 0 or s == t.steps)
        saves = s == t.steps or bool(t.save_every) and s % t.save_every == 0
        return s % t.log_every == 0 or evals or saves, evals, saves

    def run(self, state, start: int, meta_step, next_episodes) -> tuple[Any, int | None, list]:
        """Steps ``start .. train.steps``; ``(final state, best step, kept steps)``."""
        from tqdm.auto import tqdm

        t = self.cfg.train
        self.bar = tqdm(total=t.steps, initial=start, disable=not (self.progress and self.main),
                        unit="step", dynamic_ncols=True)
        pending: list[dict] = []
        self.window_start, self.clock = start, time.perf_counter()
        done = start
        stop = StopRequest().__enter__()  # left in the finally below
        try:
            for step in range(start, t.steps):
                if stop.requested:
                    raise KeyboardInterrupt
                state, metrics = meta_step(state, next_episodes(step))
                pending.append(metrics)
                s = done = step + 1
                flush, evals, saves = self.is_flush(s)
                if not flush:
                    continue
                self._log_window(jax.device_get(pending), s)  # the only host sync
                pending = []
                self.ckpts.check()  # a failed background save stops the run here
                val_acc = self._meta_val(state, s) if evals else None
                # A new best is saved even off the save_every grid: "best" never misses it.
                if val_acc is not None:
                    saves = saves or self.best_val is None or val_acc > self.best_val
                    self.best_val = (val_acc if self.best_val is None
                                     else max(self.best_val, val_acc))
                if saves:
                    self._save(state, s, val_acc)
                self.window_start, self.clock = s, time.perf_counter()
        except KeyboardInterrupt:
            self.ckpts.wait()
            raise TrainingInterrupted(done, self.ckpts.latest_step()) from None
        finally:
            stop.__exit__()
            self.bar.close()
            self.ckpts.wait()
            best_step, kept = self.ckpts.best_step(), self.ckpts.all_steps()
            self.ckpts.close()
        return state, best_step, kept

    def _log_window(self, host: list[dict], s: int) -> None:
        """Write the window's mean metrics and timing; stop on a NaN/inf meta-loss."""
        t = self.cfg.train
        row = {"step": s, **{k: float(np.mean([m[k] for m in host]))
                             for k in ("loss", "accuracy", "grad_norm", "cg_residual")
                             if k in host[0]}}
        seconds = time.perf_counter() - self.clock
        rate = (s - self.window_start) * t.tasks / max(seconds, 1e-9)
        if self.main:
            _append(self.run_dir / METRICS_FILE, row)
            _append(self.run_dir / TIMING_FILE, {"step": s, "seconds": round(seconds, 4),
                                                 "tasks_per_s": round(rate, 2)})
        self.bar.update(s - self.bar.n)
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", acc=f"{row['accuracy']:.3f}",
                             tasks_s=f"{rate:.1f}", refresh=False)
        bad = [m["loss"] for m in host if not np.isfinite(m["loss"])]
        if bad:
            raise diverged(f"meta-loss became {bad[0]} between steps {self.window_start + 1} "
                           f"and {s}", self.ckpts)

    def _meta_val(self, state, s: int) -> float:
        """Meta-val accuracy after step ``s`` (the mean over sources with data.sources)."""

        cfg, t = self.cfg, self.cfg.train
        if cfg.data.sources:  # per source; val_accuracy is their mean
            res = evaluate_sources(state.meta_params, cfg, self.data, self.split)
        else:
            res = evaluate(state.meta_params, cfg.meta, self.data, self.split["val"],
                           [(cfg.meta.way, t.shot, t.query)], episodes=t.eval_episodes,
                           seed=t.seed, methods=("meta_learned",),
                           data_name=cfg.data.source, split="meta_val")[0]
        val_acc = res["results"]["meta_learned"]["mean"]
        if self.main:
            _append(self.run_dir / METRICS_FILE, {
                "step": s, "val_accuracy": val_acc,
                "val_ci95": res["results"]["meta_learned"]["ci95"],
                "val_episodes": t.eval_episodes,
                **({"val_by_source": {k: v["mean"] for k, v in res["by_source"].items()}}
                   if "by_source" in res else {})})
        self.bar.write(f"step {s}: meta-val accuracy {val_acc:.4f} "
                       f"+- {res['results']['meta_learned']['ci95']:.4f}")
        return val_acc

    def _save(self, state, s: int, val_acc: float | None) -> None:
        if not bool(_all_finite(state.meta_params)):
            raise diverged(f"meta-params hold NaN/inf after step {s}", self.ckpts)
        self.sampler.step = s  # the step the next episode batch is drawn for
        self.ckpts.save(s, state, self.config_dict, self.sampler.state_dict(),
                        val_accuracy=val_acc)


def _finish(cfg: ExperimentConfig, run_dir: Path, state, start: int, best_step: int | None,
            kept: list[int], compiles: int) -> TrainResult:
    """Plot the curves and write ``train_summary.json`` (main process)."""
    t = cfg.train
    val = [r["val_accuracy"] for r in read_metrics(run_dir / METRICS_FILE)
           if r.get("step") == best_step and "val_accuracy" in r]
    best = (best_step, val[-1] if val else None)
    if parallel.is_main_process():
        if (run_dir / METRICS_FILE).exists():
            plot_learning_curves(run_dir / METRICS_FILE, run_dir / "learning_curves.png",
                                 title=f"{cfg.name}: {cfg.meta.algorithm}")
        write_json_atomically(run_dir / "train_summary.json", {
            "final_step": t.steps, "best_step": best_step, "best_val_accuracy": best[1],
            "checkpoints": kept,
            "algorithm": cfg.meta.algorithm, "tasks_per_step": t.tasks})
    return TrainResult(run_dir, state, start, t.steps, best_step, best[1], compiles)
