"""The PyTorch peer of the benchmark: the same MAML meta-step, written idiomatically.

A reference implementation, not library code: ``import jaxmaml`` never loads it (it needs
the optional ``torch==2.13.0``); ``jaxmaml bench --peer torch`` (or a grid point with
``backend: torch``) imports it, and ``tests/bench/test_bench.py`` checks our meta-step
against it.

Same BERT (``transformers.BertModel``, eager attention, no pooler since the head reads the
``[CLS]`` hidden state), the same weights (via :func:`jaxmaml.models.hf.to_hf_state_dict`),
the same synthetic episodes, inner loop (zero-init linear head, ``S`` SGD steps on the
support cross-entropy), query cross-entropy, meta-gradient w.r.t. every encoder param and
an Adam update (lr 1e-4, no clipping: ``BENCH_OPTIM``). Two modes:

* ``func_vmap``: ``torch.func.functional_call`` + ``torch.func.grad``, ``vmap`` over tasks.
* ``loop``: a per-task Python loop with ``torch.autograd.grad(create_graph=True)`` for
  second order; each task's query loss is back-propagated as soon as it is computed, so
  only one task's graph is alive at a time (what a careful PyTorch user does).

First order (FOMAML) in both modes: inner gradients without a graph, then the gradient of
the query loss w.r.t. the adapted weights is the meta-gradient.

Requires ``torch==2.13.0`` and ``transformers`` (optional dependencies).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxmaml.bench.point import (BENCH_OPTIM, BenchPoint, make_episodes, resolve_model,
                                 throughput_fields, time_steps)
from jaxmaml.models.hf import config_to_hf, to_hf_state_dict


def _import_torch():
    try:
        import torch
        import transformers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("the PyTorch peer needs `pip install torch==2.13.0 transformers`"
                           ) from e
    return torch, transformers


def device():
    """``"cuda"`` when PyTorch sees a GPU, else ``"cpu"``: the peer runs where jax does."""
    torch, _ = _import_torch()
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_model(params, config, num_threads: int):
    """``transformers.BertModel`` with our weights, eval mode (no dropout), float32 (on
    :func:`device`; bf16 points autocast at run time)."""
    torch, transformers = _import_torch()
    torch.set_num_threads(num_threads)
    hf = transformers.BertConfig(**config_to_hf(config.replace(dtype="float32")))
    hf._attn_implementation = "eager"
    model = transformers.BertModel(hf, add_pooling_layer=False)
    state = {k: torch.from_numpy(np.array(v)) for k, v in to_hf_state_dict(params).items()
             if not k.startswith("pooler.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"weights do not fit BertModel: missing {missing}, "
                           f"unexpected {unexpected}")
    return model.to(device()).eval()


class TorchMAML:
    """The meta-step of one ``(mode, order)`` over a fixed model; ``step(batch) -> loss``."""

    def __init__(self, model, point: BenchPoint, inner_lr: float = 0.01):
        torch, _ = _import_torch()
        self.torch, self.model, self.point, self.lr = torch, model, point, inner_lr
        self.names = [n for n, _ in model.named_parameters()]
        self.params = dict(model.named_parameters())
        self.optimizer = torch.optim.Adam(self.params.values(), lr=BENCH_OPTIM.lr,
                                          betas=(BENCH_OPTIM.b1, BENCH_OPTIM.b2))
        self.hidden = model.config.hidden_size
        self.device = next(model.parameters()).device

    # -- functional pieces (params: dict name -> tensor, plus "head.kernel"/"head.bias")
    def logits(self, p: dict, ids, mask):
        """``[n, way]`` logits; ``mask`` ``[n, L]`` 0/1, or ``[n, 1, 1, L]`` additive."""
        enc = {k: v for k, v in p.items() if not k.startswith("head.")}
        out = self.torch.func.functional_call(self.model, enc, (ids,), {"attention_mask": mask})
        return out.last_hidden_state[..., 0, :] @ p["head.kernel"] + p["head.bias"]

    def xent(self, p: dict, ids, mask, labels):
        return self.torch.nn.functional.cross_entropy(self.logits(p, ids, mask), labels)

    def head(self, requires_grad: bool) -> dict:
        z = lambda *s: self.torch.zeros(*s, requires_grad=requires_grad, device=self.device)
        return {"head.kernel": z(self.hidden, self.point.meta.way), "head.bias": z(self.point.meta.way)}

    # -- loop mode
    def _loop_adapt(self, sup, second: bool) -> dict:
        p = {**self.params, **self.head(True)}
        for _ in range(self.point.meta.num_inner_steps):
            loss = self.xent(p, *sup)
            grads = self.torch.autograd.grad(loss, list(p.values()), create_graph=second)
            p = {k: v - self.lr * g for (k, v), g in zip(p.items(), grads)}
        return p

    def loop_step(self, batch) -> float:
        second = self.point.order == "second"
        total = 0.0
        for t in range(self.point.tasks):
            sup, qry = [x[t] for x in batch[0]], [x[t] for x in batch[1]]
            p = self._loop_adapt(sup, second)
            loss = self.xent(p, *qry) / self.point.tasks
            loss.backward()  # first order: p = meta - lr * (detached grads), so d p/d meta = I
            total += float(loss.detach())
        return total

    # -- torch.func mode
    def _func_adapt(self, meta: dict, sup) -> dict:
        grad = self.torch.func.grad
        p = {**meta, **self.head(False)}
        for _ in range(self.point.meta.num_inner_steps):
            g = grad(self.xent)(p, *sup)
            p = {k: p[k] - self.lr * g[k] for k in p}
        return p

    def additive_mask(self, examples):
        """(ids, 0/1 mask, labels) -> (ids, additive mask ``[..., n, 1, 1, L]``, labels).

        transformers checks ``mask.all()`` to skip masking (data-dependent control flow
        that ``vmap`` rejects); a prepared 4D mask is passed through untouched. Adding the
        float32 minimum gives padded keys exactly zero probability, like ours.
        """
        ids, mask, labels = examples
        big = self.torch.finfo(self.torch.float32).min
        return ids, (1.0 - mask[..., None, None, :].float()) * big, labels

    def func_step(self, batch) -> float:
        func = self.torch.func
        meta = {k: v.detach() for k, v in self.params.items()}
        sup, qry = map(self.additive_mask, batch)
        if self.point.order == "second":
            def task_loss(meta_, s, q):
                return self.xent(self._func_adapt(meta_, s), *q)

            def meta_loss(meta_):
                losses = func.vmap(task_loss, in_dims=(None, 0, 0))(meta_, sup, qry)
                return losses.mean(), losses.mean()

            grads, loss = func.grad(meta_loss, has_aux=True)(meta)
        else:
            with self.torch.no_grad():
                adapted = func.vmap(self._func_adapt, in_dims=(None, 0))(meta, sup)
            qgrad = func.grad_and_value(lambda p, q: self.xent(p, *q))
            grads, losses = func.vmap(qgrad, in_dims=(0, 0))(adapted, qry)
            grads = {k: v.mean(0) for k, v in grads.items()}
            loss = losses.mean()
        for k, v in self.params.items():
            v.grad = grads[k]
        return float(loss)

    def step(self, batch) -> float:
        """One meta-step; ``dtype=bf16`` points run the meta-loss and its gradients under
        ``torch.autocast(dtype=torch.bfloat16)`` (bf16 matmuls, f32 master weights and Adam,
        PyTorch's own mixed precision), like jaxmaml's ``model.dtype: bfloat16``."""
        self.optimizer.zero_grad(set_to_none=True)
        run = self.func_step if self.point.torch_mode == "func_vmap" else self.loop_step
        with self.torch.autocast(self.device.type, dtype=self.torch.bfloat16,
                                 enabled=self.point.dtype == "bf16"):
            loss = run(batch)
        self.optimizer.step()
        return loss


def to_torch_batch(episodes) -> tuple:
    """Episodes -> ((ids, mask, labels) support, (ids, mask, labels) query) int64 tensors
    on :func:`device`."""
    import torch
    dev = device()
    t = lambda x: torch.from_numpy(np.asarray(x, np.int64)).to(dev)  # noqa: E731
    conv = lambda ex: (t(ex.input_ids), t(ex.attention_mask), t(ex.labels))  # noqa: E731
    return conv(episodes.support), conv(episodes.query)


def run_torch_point(point: BenchPoint, num_threads: int) -> dict[str, Any]:
    """Time the PyTorch peer for ``point``; failures are reported in the row, not raised."""
    torch, transformers = _import_torch()
    num_threads = point.threads or num_threads
    row: dict[str, Any] = {"torch": torch.__version__, "transformers": transformers.__version__,
                           "torch_threads": num_threads, "torch_device": device()}
    params, config = resolve_model(point.model, point.dtype, point.seed)
    episodes = make_episodes(point, config)
    batch = to_torch_batch(episodes)
    runner = TorchMAML(build_model(params, config, num_threads), point)
    try:
        times, loss0 = time_steps(lambda: runner.step(batch), point)
    except Exception as e:  # noqa: BLE001 - a failed mode is a result to report
        return {**row, "failed": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    return {**row, **throughput_fields(point, episodes, times), "loss_first_step": loss0}

