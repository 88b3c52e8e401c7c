"""SetFit against jaxmaml on exactly the episodes ``jaxmaml eval`` scores, paired per episode.

Episode ``i`` of a setting is the one :func:`jaxmaml.run.protocol.evaluate` draws as
episode ``i`` (same pool: :func:`jaxmaml.run.protocol._pool` with ``eval.max_per_class``
and ``eval.seed``; same :class:`~jaxmaml.data.episodes.EpisodeSampler`, 20 tasks per
step), turned back into the source's texts. The classes are those ``jaxmaml eval`` picks:
with ``--source NAME`` a multi-source config's meta-test classes of that source (every
class of a held-out source; :func:`jaxmaml.run.evaluate.evaluate_sources`), with
``--data NAME`` every class of a built-in source or file (``jaxmaml eval --data``). Every
episode's texts are re-tokenized and checked against the token rows the protocol scores.

Methods on each episode (fit on the ``way*shot`` support texts, predict the
``way*query`` query texts):

Every method starts from all-MiniLM-L6-v2, or from the sentence-transformers directory
``--model DIR`` (e.g. all-mpnet-base-v2, ``make mpnet``); ``OUT_DIR/model.json`` records it
and a directory holding rows of another encoder is refused.

- ``setfit``: the ``setfit`` library on that encoder (contrastive fine-tuning on
  pairs, then scikit-learn's logistic-regression head); its few-shot defaults
  ``num_iterations=20``, 1 epoch, batch size 16, ``max_seq_length`` = ``--seq-len``;
  a fresh model per episode, ``seed`` = the episode index, no checkpoint saved, torch on
  ``--torch-threads`` threads.
- ``jaxmaml_learner``: ``FewShotClassifier`` on the original encoder with its default
  adaptation (a plain sentence-transformers directory loads with its own pooling and
  normalization and a cosine centroid). Rows measured before commit e6457b3 used a
  squared-euclidean centroid of unnormalized features here.
- ``jaxmaml_probe``: the same with ``head="probe"`` (logistic regression on the
  L2-normalized sentence features).
- ``jaxmaml_finetune``: ``adapt="finetune"`` (test-time fine-tuning of the top layers
  with a cosine head started at the prototypes) with the default ``FinetuneOptions``
  changed by ``--finetune KEY=VALUE`` (recorded in ``OUT_DIR/finetune_options.json``; a
  directory of rows fine-tuned with other options is refused);
  ``jaxmaml_finetune_names``: the same with ``fit(..., label_texts=True)`` (the class
  names, e.g. ``admin``, as one more example per class); ``jaxmaml_finetune_transductive``:
  with ``predict(..., transductive=True)`` (over the episode's query texts);
  ``jaxmaml_finetune_names_transductive``: both (the recommended setting).

Our classifiers get the class names as labels (what a user passes); accuracy is against
the protocol's task-local labels.

Output: one JSON line per (episode, method) appended to
``OUT_DIR/{source}_{way}w{shot}s.jsonl`` as it is measured (a partial run is usable; a
rerun skips what is there), then the summary of :mod:`setfit_report`. Run
``python benchmarks/setfit_report.py OUT_DIR`` to (re)write ``benchmarks/results/setfit.md``.

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python benchmarks/setfit_episodes.py \\
        --config configs/quickstart.yaml --source debian --shots 1 5 --episodes 30
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # this jaxmaml; setfit_report beside
from setfit_report import OPTIONS_FILE  # noqa: E402 -- the options each --out was measured with
BATCH_TASKS = 20  # protocol.evaluate's default: episode i is task i % 20 of step i // 20
# our methods: FewShotClassifier keyword arguments, and fit's / predict's extra options
JAXMAML = {
    "jaxmaml_learner": ({}, {}, {}),
    "jaxmaml_probe": ({"head": "probe"}, {}, {}),
    "jaxmaml_finetune": ({"adapt": "finetune"}, {}, {}),
    "jaxmaml_finetune_names": ({"adapt": "finetune"}, {"label_texts": True}, {}),
    "jaxmaml_finetune_transductive": ({"adapt": "finetune"}, {}, {"transductive": True}),
    "jaxmaml_finetune_names_transductive": ({"adapt": "finetune"}, {"label_texts": True},
                                            {"transductive": True}),
}
# SetFit itself, and SetFit's fine-tuned body read out as our recommended setting: the class
# names as one more example per class, soft k-means over the queries (no logistic head)
SETFIT = ("setfit", "setfit_names_transductive")
METHODS = (*SETFIT, *JAXMAML)
SETFIT_ARGS = {"num_iterations": 20, "num_epochs": 1, "batch_size": 16}


class EpisodeSource(NamedTuple):
    """What episodes are drawn from: ``texts`` aligned with the rows of ``data`` (the
    ``TokenizedData`` ``jaxmaml eval`` scores), the ``classes`` to draw from, the
    protocol's ``seed`` and ``max_per_class``, and the source's ``name``."""

    texts: list[str]
    data: Any
    classes: list[str]
    seed: int
    max_per_class: int | None
    name: str


class TextEpisode(NamedTuple):
    """One episode as texts: support ``[way*shot]``, query ``[way*query]``, task-local
    labels, the dataset rows behind them (for the check against the protocol) and the
    name of each task-local label without its ``source/`` prefix (``[way]``)."""

    support: list[str]
    support_labels: np.ndarray
    query: list[str]
    query_labels: np.ndarray
    support_rows: np.ndarray
    query_rows: np.ndarray
    class_names: list[str]


MISSING_SETFIT = ("setfit_episodes: the setfit package is not installed; install the "
                  "benchmark extra: pip install -c constraints.txt \"torch==2.13.0\" "
                  "-e '.[setfit]' (or leave setfit out of --methods)")


def setfit_installed() -> bool:
    return importlib.util.find_spec("setfit") is not None


def load_source(config: str, source: str | None, data: str | None, seq_len: int
                ) -> EpisodeSource:
    """The texts, tokenized data and classes ``jaxmaml eval --seq-len`` uses for ``source``
    (a source of the multi-source ``config``) or ``data`` (``--data``)."""
    from jaxmaml.data.mixture import SEP
    from jaxmaml.run.config_load import load_config
    from jaxmaml.run.evaluate import load_eval_data
    from jaxmaml.run.data import cap_per_class, load_data, load_text
    from jaxmaml.run.data import source_config

    cfg = load_config(config)
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, seq_len=seq_len))
    ev = cfg.eval
    if data:
        tokenized = load_eval_data(cfg, data, seq_len=seq_len).data
        texts = cap_per_class(load_text(cfg, data), ev.max_per_class, ev.seed).texts
        classes = list(tokenized.class_names)
    else:
        if not cfg.data.sources or source not in [s.label for s in cfg.data.sources]:
            raise ValueError(f"{config} has no data.sources entry named {source!r}; pass "
                             "--source NAME of one, or --data NAME.")
        tokenized, split = load_data(cfg)
        texts = []
        for src in cfg.data.sources:  # load_sources' order and per-source cap
            scfg = source_config(cfg, src)
            texts += cap_per_class(load_text(scfg), scfg.data.max_per_class,
                                   scfg.data.split_seed).texts
        classes = [c for c in split["test"] if c.startswith(f"{source}{SEP}")]
    if len(texts) != len(tokenized.labels):
        raise AssertionError(f"{len(texts)} texts for {len(tokenized.labels)} tokenized rows")
    return EpisodeSource(texts, tokenized, classes, ev.seed, ev.max_per_class,
                         data or source)


def pool_rows(src: EpisodeSource):
    """``(pool, rows)``: the protocol's pool (:func:`jaxmaml.run.protocol._pool`) and the
    row of ``src.data`` behind each pool row (int64 ``[M]``)."""
    from jaxmaml.data.tokenize import TokenizedData
    from jaxmaml.run.protocol import _pool

    labels = np.asarray(src.data.labels)
    row_ids = np.arange(len(labels), dtype=np.int64)[:, None]
    tagged = TokenizedData(row_ids, np.ones_like(row_ids), labels, src.data.class_names)
    rows = _pool(tagged, src.classes, src.max_per_class, src.seed).input_ids[:, 0]
    pool = _pool(src.data, src.classes, src.max_per_class, src.seed)
    return pool, rows


def text_episodes(src: EpisodeSource, way: int, shot: int, query: int, episodes: int
                  ) -> list[TextEpisode]:
    """Episodes ``0 .. episodes-1`` of ``jaxmaml eval``'s ``(way, shot, query)`` setting
    as texts; each checked to re-tokenize to the protocol's token rows."""
    from jaxmaml.data.episodes import EpisodeSampler
    from jaxmaml.data.mixture import SEP

    pool, rows = pool_rows(src)
    sampler = EpisodeSampler(pool, list(src.classes), way, shot, query, BATCH_TASKS, src.seed)
    out = []
    for i in range(episodes):
        idx = sampler.indices(i // BATCH_TASKS, slice(i % BATCH_TASKS, i % BATCH_TASKS + 1))
        s_rows, q_rows = rows[idx.support_idx[0]], rows[idx.query_idx[0]]
        names = [src.data.class_names[c].split(SEP, 1)[-1] for c in idx.classes[0]]
        out.append(TextEpisode([src.texts[r] for r in s_rows], idx.support_labels[0],
                               [src.texts[r] for r in q_rows], idx.query_labels[0],
                               s_rows, q_rows, names))
    return out


def check_tokens(src: EpisodeSource, episode: TextEpisode, tokenizer_dir: str) -> None:
    """Raise unless the episode's texts tokenize to the rows of ``src.data`` it names."""
    from jaxmaml.data.tokenize import _encode, _load_tokenizer

    tok = _load_tokenizer(tokenizer_dir)
    seq_len = src.data.input_ids.shape[1]
    for texts, rows in ((episode.support, episode.support_rows),
                        (episode.query, episode.query_rows)):
        ids, mask, _ = _encode(tok, texts, seq_len)
        if not (np.array_equal(ids, src.data.input_ids[rows])
                and np.array_equal(mask, src.data.attention_mask[rows])):
            raise AssertionError("an episode's texts do not tokenize to the protocol's rows")


def names_transductive_predict(support_feats: np.ndarray, support_labels: np.ndarray,
                               name_feats: np.ndarray, query_feats: np.ndarray) -> np.ndarray:
    """Our recommended readout on any features: the cosine centroid of the support rows
    plus one class-name row per class (weight 1, :data:`jaxmaml.meta.priors.NAME_WEIGHT`),
    refined by soft k-means over the queries (:func:`jaxmaml.meta.transductive.soft_kmeans`);
    the query's nearest refined prototype by cosine."""
    import jax.numpy as jnp

    from jaxmaml.meta import finetune, priors, transductive
    from jaxmaml.meta.encoding import l2_normalize

    way = len(name_feats)
    feats = jnp.concatenate([jnp.asarray(support_feats), jnp.asarray(name_feats)])
    labels = jnp.concatenate([jnp.asarray(support_labels, jnp.int32), jnp.arange(way)])
    weights = jnp.concatenate([jnp.ones(len(support_feats)),
                               jnp.full(way, priors.NAME_WEIGHT)]).astype(feats.dtype)
    norm = l2_normalize(feats)
    protos = finetune.cosine_head_init(norm, labels, weights, way)["kernel"].T
    q = l2_normalize(jnp.asarray(query_feats))
    refined = transductive.soft_kmeans(protos, norm, labels, weights, q,
                                       jnp.ones(len(q), q.dtype))
    return np.asarray(jnp.argmax(q @ refined.T, -1))


def setfit_method(seq_len: int, names_transductive: bool = False, model_dir=None) -> Callable:
    """``run(episode, seed) -> (predictions, fit_s, predict_s)`` with the setfit library on
    the sentence-transformers directory ``model_dir`` (default: all-MiniLM-L6-v2);
    ``names_transductive``: after SetFit's training, predict with
    :func:`names_transductive_predict` on its fine-tuned body's embeddings instead of its
    logistic head (the class names are the episode's label strings, as
    ``fit(label_texts=True)`` gives them)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from jaxmaml.run.config_load import minilm_dir

    model_dir = str(model_dir or minilm_dir())

    def run(ep: TextEpisode, seed: int):
        t0 = time.perf_counter()
        model = SetFitModel.from_pretrained(model_dir)
        model.model_body.max_seq_length = seq_len
        train = Dataset.from_dict({"text": ep.support,
                                   "label": [int(y) for y in ep.support_labels]})
        with tempfile.TemporaryDirectory() as tmp:  # no checkpoint written: not timed I/O
            args = TrainingArguments(**SETFIT_ARGS, seed=seed, report_to="none",
                                     show_progress_bar=False, output_dir=tmp,
                                     save_strategy="no")
            Trainer(model=model, args=args, train_dataset=train).train()
        t1 = time.perf_counter()
        if names_transductive:
            enc = functools.partial(model.model_body.encode, convert_to_numpy=True,
                                    show_progress_bar=False)
            pred = names_transductive_predict(enc(ep.support), ep.support_labels,
                                              enc(list(ep.class_names)), enc(ep.query))
        else:
            pred = np.asarray(model.predict(ep.query, show_progress_bar=False))
        return pred, t1 - t0, time.perf_counter() - t1

    return run


def jaxmaml_method(name: str, seq_len: int, finetune=None, model_dir=None) -> Callable:
    """``run(episode, seed)`` with ``FewShotClassifier`` on the original encoder
    (``model_dir``, default all-MiniLM-L6-v2),
    set up as :data:`JAXMAML` ``[name]`` says (``label_texts=True``: the class names);
    ``finetune``: the ``FinetuneOptions`` of ``adapt="finetune"`` (default: its defaults)."""
    import warnings

    import jax

    from jaxmaml.classifier import FewShotClassifier
    from jaxmaml.run.config_load import minilm_dir

    init_kw, fit_kw, predict_kw = JAXMAML[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not a jaxmaml export": the original encoder, meant
        clf = FewShotClassifier.from_pretrained(model_dir or minilm_dir(), seq_len=seq_len,
                                                finetune=finetune, **init_kw)

    def run(ep: TextEpisode, seed: int):
        labels = [ep.class_names[y] for y in ep.support_labels]
        t0 = time.perf_counter()
        clf.fit(ep.support, labels, **fit_kw)
        jax.block_until_ready(clf.task_params_)  # fit dispatches asynchronously
        t1 = time.perf_counter()
        pred = np.asarray(clf.predict(ep.query, **predict_kw))
        index = {c: j for j, c in enumerate(ep.class_names)}
        return np.array([index[c] for c in pred]), t1 - t0, time.perf_counter() - t1

    return run


def make_methods(names: Sequence[str], seq_len: int, finetune=None,
                 model_dir=None) -> dict[str, Callable]:
    return {m: setfit_method(seq_len, m == "setfit_names_transductive", model_dir)
            if m in SETFIT else jaxmaml_method(m, seq_len, finetune, model_dir) for m in names}


def record_options(out: Path, changes: dict, write: bool = True) -> None:
    """Check ``out/finetune_options.json`` (the ``--finetune`` changes to the defaults) and
    (``write``) write it: raise ``ValueError`` when ``out`` holds fine-tuning rows measured
    with other options (rows of other methods, e.g. SetFit's, do not depend on them)."""
    path = out / OPTIONS_FILE
    tuned = any(json.loads(line)["method"].startswith("jaxmaml_finetune")
                for f in out.glob("*.jsonl") for line in f.read_text().splitlines())
    before = json.loads(path.read_text()) if path.exists() else ({} if tuned else None)
    if before is not None and before != changes:
        raise ValueError(f"{out} holds episodes fine-tuned with --finetune {before or 'defaults'}"
                         f", not {changes or 'defaults'}; pass another --out.")
    if write:
        path.write_text(json.dumps(changes, sort_keys=True) + "\n")


def record_model(out: Path, model: str | None, write: bool = True) -> None:
    """Check ``out/model.json`` (the ``--model`` every row of ``out`` started from; no file
    with rows there: the default encoder) and (``write``) write it: raise ``ValueError``
    when ``out`` holds rows of another encoder."""
    path = out / "model.json"
    rows = any(f.stat().st_size for f in out.glob("*.jsonl"))
    before = json.loads(path.read_text())["model"] if path.exists() else None
    if (path.exists() or rows) and before != model:
        raise ValueError(f"{out} holds episodes of the encoder {before or 'all-MiniLM-L6-v2'}"
                         f", not {model or 'all-MiniLM-L6-v2'}; pass another --out.")
    if write:
        path.write_text(json.dumps({"model": model}) + "\n")


def done_keys(path: Path) -> set[tuple[int, str]]:
    if not path.exists():
        return set()
    return {(r["episode"], r["method"]) for r in map(json.loads, path.read_text().splitlines())}


def run_settings(src: EpisodeSource, methods: dict[str, Callable], way: int,
                 shots: Sequence[int], query: int, episodes: int, out: Path,
                 tokenizer_dir: str) -> list[Path]:
    """Append one JSON line per (episode, method) not yet in the setting's file
    (``out/{source}_{way}w{shot}s.jsonl``), episode by episode across ``shots`` (so a
    partial run covers every setting); returns the files."""
    paths = [out / f"{src.name}_{way}w{shot}s.jsonl" for shot in shots]
    done = [done_keys(p) for p in paths]
    eps = [text_episodes(src, way, shot, query, episodes) for shot in shots]
    for i in range(episodes):
        for shot, path, seen, setting in zip(shots, paths, done, eps):
            check_tokens(src, setting[i], tokenizer_dir)
            for name, run in methods.items():
                if (i, name) in seen:
                    continue
                pred, fit_s, predict_s = run(setting[i], i)
                row = {"source": src.name, "way": way, "shot": shot, "query": query,
                       "episode": i, "method": name,
                       "accuracy": float(np.mean(pred == setting[i].query_labels)),
                       "fit_s": round(fit_s, 4), "predict_s": round(predict_s, 4)}
                with path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    return paths


# our methods' twins in jaxmaml eval (original encoder, same features and classifier)
PROTOCOL_TWINS = {"jaxmaml_learner": "nearest_centroid", "jaxmaml_probe": "linear_probe"}


def protocol_means(config: str, src: EpisodeSource, way: int, shots: Sequence[int],
                   query: int, episodes: int) -> dict[str, dict[str, float]]:
    """``{"episodes": E, "{way}w{shot}s": {our method: its protocol twin's mean}}`` from
    :func:`jaxmaml.run.protocol.evaluate` on the same classes, seed and episodes: equal
    means (to float precision) show the text episodes and ours are the protocol's."""
    from jaxmaml.run.config_load import load_config
    from jaxmaml.run.state import initial_encoder
    from jaxmaml.run.protocol import evaluate

    cfg = load_config(config)
    encoder = initial_encoder(cfg)
    rows = evaluate({"encoder": encoder}, cfg.meta, src.data, src.classes,
                    [(way, shot, query) for shot in shots], episodes=episodes, seed=src.seed,
                    methods=tuple(PROTOCOL_TWINS.values()), pretrained_params=encoder,
                    max_per_class=src.max_per_class)
    return {"episodes": episodes, **{
        f"{r['way']}w{r['shot']}s": {m: r["results"][twin]["mean"]
                                     for m, twin in PROTOCOL_TWINS.items()} for r in rows}}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--source", help="a data.sources name of --config (its meta-test classes)")
    what.add_argument("--data", help="a built-in source or file (all its classes)")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--model", metavar="DIR", help="the encoder every method starts from: a "
                   "sentence-transformers directory (default: all-MiniLM-L6-v2)")
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "setfit"))
    p.add_argument("--check-protocol", action="store_true",
                   help="also write OUT/{source}_protocol.json: jaxmaml eval's means of "
                        "our methods' twins on the same episodes")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch intra-op threads for SetFit (1: least waiting on a busy CPU)")
    p.add_argument("--finetune", action="append", default=[], metavar="KEY=VALUE",
                   help="a FinetuneOptions change for the jaxmaml_finetune* methods "
                        "(repeatable), e.g. --finetune steps=30")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if set(SETFIT) & set(args.methods) and not setfit_installed():
        print(MISSING_SETFIT, file=sys.stderr)
        return 2
    from jaxmaml.run.config_load import minilm_dir
    from setfit_report import summarize

    from jaxmaml.meta.finetune import FinetuneOptions

    out = Path(args.out)
    try:
        default = FinetuneOptions()
        finetune = default.replace_from_strings(args.finetune)
        changes = {k: v for k, v in dataclasses.asdict(finetune).items()
                   if v != getattr(default, k)}
        if out.is_dir():  # refused before anything is loaded; written once measuring starts
            record_options(out, changes, write=False)
            record_model(out, args.model, write=False)
        src = load_source(args.config, args.source, args.data, args.seq_len)
    except (ValueError, OSError) as e:  # ConfigError is a ValueError
        print(f"setfit_episodes: {e}", file=sys.stderr)
        return 2
    if set(SETFIT) & set(args.methods):
        import torch

        torch.set_num_threads(args.torch_threads)
    methods = make_methods(args.methods, args.seq_len, finetune, args.model)
    out.mkdir(parents=True, exist_ok=True)
    record_options(out, changes)
    record_model(out, args.model)
    if args.check_protocol:
        means = protocol_means(args.config, src, args.way, args.shots, args.query,
                               args.episodes)
        (out / f"{src.name}_protocol.json").write_text(json.dumps(means, indent=1) + "\n")
        print(json.dumps({"protocol": means}), flush=True)
    for path in run_settings(src, methods, args.way, args.shots, args.query, args.episodes,
                             out, str(minilm_dir())):
        print(json.dumps(summarize(path)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
