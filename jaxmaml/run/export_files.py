"""What an export keeps besides the HF encoder: the learner and how to use it.

- ``jaxmaml.json``: algorithm and every adaptation setting (the run's ``meta`` section:
  inner LR, steps, adapt filter, head init, pooling, distance/temperature, ...), the
  encoder's :class:`~jaxmaml.models.bert.BertConfig`, ``seq_len`` and the checkpoint step;
- ``jaxmaml_extras.safetensors``: the learner's meta-learned leaves other than the encoder
  (Meta-SGD's / MAML++'s learned rates, the Matching Networks FCE module, the Relation
  Network MLP), flat ``"path/to/leaf"`` keys; absent when the learner has none;
- ``modules.json``, ``sentence_bert_config.json``, ``1_Pooling/config.json``: the
  sentence-transformers layout for the run's pooling, plus a ``Normalize`` module
  (``2_Normalize``) where the learner L2-normalizes its features (``meta.protonet.normalize_features``,
  as all-MiniLM-L6-v2's own layout does), so ``SentenceTransformer(export_dir).encode``
  gives :meth:`jaxmaml.FewShotClassifier.embed`'s features on texts of any length up to
  ``max_seq_length``: the use-time length of :func:`jaxmaml.run.load.use_time_length` (the
  base sentence encoder's own, all-MiniLM-L6-v2: 256, else the model's position limit),
  which ``FewShotClassifier`` reads back, so texts are not cut at the run's (often short)
  training length.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from jaxmaml.run.load import EXPORT_FORMAT, EXTRAS_FILE, JAXMAML_FILE, use_time_length
from jaxmaml.run.st_layout import max_seq_length, ST_CONFIG_FILE
from jaxmaml.tree import flatten

POOLING_DIR = "1_Pooling"
NORMALIZE_DIR = "2_Normalize"


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


def extras_of(meta_params: dict) -> dict[str, np.ndarray]:
    """Flat ``{"key/path": array}`` of every ``meta_params`` leaf outside ``"encoder"``."""
    import jax


    extras = {k: v for k, v in meta_params.items() if k != "encoder"}
    return {k: np.ascontiguousarray(np.asarray(jax.device_get(v)))
            for k, v in flatten(extras).items()}


def sentence_transformers_files(pooling: str, hidden_size: int, seq_len: int,
                                normalize: bool = False) -> dict[str, str]:
    """``modules.json`` (Transformer + Pooling [+ Normalize]) and the modules' configs."""
    modules = [{"idx": 0, "name": "0", "path": "",
                "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": POOLING_DIR,
                "type": "sentence_transformers.models.Pooling"}]
    normalize_files = {}
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": NORMALIZE_DIR,
                        "type": "sentence_transformers.models.Normalize"})
        normalize_files[f"{NORMALIZE_DIR}/config.json"] = _json({})
    pool = {"word_embedding_dimension": hidden_size,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False,
            "include_prompt": True}
    return {"modules.json": _json(modules),
            ST_CONFIG_FILE: _json({"max_seq_length": seq_len,
                                                "do_lower_case": False}),
            f"{POOLING_DIR}/config.json": _json(pool), **normalize_files}


def base_max_seq_length(base_dir: Path | None) -> int | None:
    """The ``max_seq_length`` of the base model's own ``sentence_bert_config.json`` (``None``
    for a model without one, e.g. a random preset)."""
    return max_seq_length(base_dir)


def jaxmaml_files(meta, meta_params: dict, seq_len: int, step: int | None,
                  st_max_seq_length: int | None = None) -> dict[str, str | bytes]:
    """The files above for ``meta`` (a resolved MetaConfig) and ``meta_params``.

    ``seq_len`` (the run's) goes to ``jaxmaml.json``; sentence-transformers'
    ``max_seq_length`` is the use-time length (:func:`~jaxmaml.run.load.use_time_length`:
    a base sentence encoder's own length, all-MiniLM-L6-v2: 256, else the position limit),
    as a user swapping the export in expects.
    """
    from safetensors.numpy import save

    settings = {f.name: getattr(meta, f.name) for f in dataclasses.fields(meta)
                if f.name != "model"}
    settings = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                for k, v in settings.items()}  # options groups as nested mappings
    extras = extras_of(meta_params)
    info = {"format": EXPORT_FORMAT, "algorithm": meta.algorithm, "seq_len": seq_len,
            "step": step, "meta": settings, "model": dataclasses.asdict(meta.model),
            "extras": sorted(extras)}
    files: dict[str, str | bytes] = {JAXMAML_FILE: _json(info)}
    if extras:
        files[EXTRAS_FILE] = save(extras)
    st_len = use_time_length(meta.model, seq_len, st_max_seq_length)
    files.update(sentence_transformers_files(meta.pooling, meta.model.hidden_size, st_len,
                                             meta.protonet.normalize_features))
    return files


def how_it_adapts(meta) -> str:
    """One paragraph: what this learner does with a new task's support set."""
    m = meta
    pooled = f"{m.pooling}-pooled features"
    adapt = {"all": "all parameters", "head": "the task head only",
             "top_k_layers": f"the top {m.adapt_top_k} encoder layers and the task head",
             "regex": f"parameters matching `{m.adapt_regex}` and the task head"}[m.adapt]
    init = ("the support-set class prototypes (`W = 2c`, `b = -|c|^2`)"
            if m.head_init == "proto" else "zeros")
    rate = {"metasgd": "its meta-learned per-parameter learning rates (in the export)",
            "mamlpp": "its meta-learned per-step learning rates (in the export)"}.get(
                m.algorithm, f"learning rate {m.inner_lr}")
    if m.algorithm == "protonet":
        dist = ("squared euclidean distance" if m.protonet.distance == "sqeuclidean"
                else f"cosine similarity x {m.cosine_scale}")
        normed = "L2-normalized " if m.protonet.normalize_features else ""
        return (f"Prototypical Networks: each class is the mean of its support examples' "
                f"{normed}{pooled}; a text gets the class of the nearest prototype ({dist}). "
                "No gradient steps.")
    if m.algorithm == "matchingnet":
        fce = (" after the meta-learned full-context embedding module (in the export)"
               if m.matching.fce else "")
        return (f"Matching Networks: a text's class probabilities are a softmax attention "
                f"(cosine x {m.cosine_scale}) over the support examples' {pooled}{fce}. "
                "No gradient steps.")
    if m.algorithm == "relationnet":
        return (f"Relation Networks: the meta-learned relation MLP (in the export) scores "
                f"the text against each class prototype ({pooled}). No gradient steps.")
    return (f"{m.algorithm}: a linear head on the {pooled}, initialized to {init}, then "
            f"{m.num_inner_steps} SGD steps on the support set with {rate}, updating {adapt}"
            + (f", on the support loss plus {m.imaml.lam}/2 |p - p_meta|^2 (implicit MAML)."
               if m.algorithm == "imaml" else " (first-order)." if m.first_order else "."))


def usage_section(meta, seq_len: int) -> str:
    """The model card's "Use it" section with a FewShotClassifier snippet."""
    return "\n".join([
        "## Use it on your own few-shot task", "",
        how_it_adapts(meta), "",
        "```python", "import jaxmaml", "",
        'clf = jaxmaml.FewShotClassifier.from_pretrained("path/to/this/directory")',
        'clf.fit(["a labelled example", "another one", ...], ["label_a", "label_b", ...])',
        'clf.predict(["a new text"]); clf.predict_proba(["a new text"]); clf.classes_',
        "```", "",
        "or from the command line: `jaxmaml predict path/to/this/directory --support "
        "labelled.csv --texts new.csv --out predictions.csv`. `head=\"probe\"` "
        "(`--head probe`) fits a logistic-regression probe on the encoder's sentence "
        "features instead of the learner's adaptation (`meta_learned_probe` in the "
        "results below, where evaluated).", "",
        f"`FewShotClassifier` cuts texts at `max_seq_length` tokens (in "
        f"`sentence_bert_config.json`; meta-training used {seq_len}; `seq_len=` changes "
        "it). `transformers.AutoModel` loads the encoder alone; "
        "`sentence_transformers.SentenceTransformer` loads it with the run's "
        f"{meta.pooling} pooling{' and L2 normalization' if meta.protonet.normalize_features else ''} "
        "(the features the learner uses; its `max_seq_length` is in "
        "`sentence_bert_config.json`). The learner's settings "
        "are in `jaxmaml.json`, its meta-learned parts beyond the encoder in "
        "`jaxmaml_extras.safetensors`.", ""])
