"""Save and reload a *fitted* :class:`~jaxmaml.FewShotClassifier`.

``clf.save_pretrained(DIR)`` writes a self-contained directory (atomically: a sibling temp
directory, then a rename)::

    DIR/jaxmaml_classifier.json     format, classes (with their types), the classifier's
                                    settings (every constructor option), the task params'
                                    tree structure
    DIR/task_params.safetensors     the task parameters (prototypes, adapted leaves, probe
                                    weights, ...), flat "path/to/leaf" -> array
    DIR/encoder/                    the encoder as a `jaxmaml export` directory (HF BERT +
                                    jaxmaml.json + learner extras + sentence-transformers
                                    files), so DIR does not depend on the run it came from

Task-parameter leaves under ``encoder/`` that equal the meta-learned encoder's (a ProtoNet
keeps the whole encoder; MAML adapts only its top layers) are stored once, in ``encoder/``.
``FewShotClassifier.from_pretrained(DIR)`` reloads it fitted, and ``jaxmaml predict DIR
--texts ...`` labels texts without ``--support``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmaml.labels import classes_array
from jaxmaml.meta.options import FinetuneOptions
from jaxmaml.models.hf import save_pretrained, write_atomically
from jaxmaml.run.export_files import jaxmaml_files
from jaxmaml.run.load import load_export
from jaxmaml.run.paths import check_output_dir, write_error
from jaxmaml.tree import flatten, path_str

FITTED_FILE = "jaxmaml_classifier.json"
TASK_PARAMS_FILE = "task_params.safetensors"
SUPPORT_FILE = "support.safetensors"  # the padded support rows (transductive prediction)
ENCODER_DIR = "encoder"
FORMAT = "jaxmaml-classifier-v1"
LABEL_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def is_fitted_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a classifier saved by :func:`save_fitted`."""
    return (Path(path) / FITTED_FILE).is_file()


# ---------------------------------------------------------------------------- pytrees
def _skeleton(tree: Any, path: tuple = ()) -> Any:
    """The tree's structure as JSON: containers kept, each leaf its flat key."""
    if tree is None:
        return {"none": None}
    if isinstance(tree, dict):
        return {"dict": {str(k): _skeleton(v, (*path, jax.tree_util.DictKey(k)))
                         for k, v in tree.items()}}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        cls = type(tree)
        if not cls.__module__.startswith("jaxmaml."):
            raise ValueError(f"task parameters hold a {cls.__name__} from {cls.__module__}; "
                             "only jaxmaml NamedTuples can be saved.")
        return {"namedtuple": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f: _skeleton(getattr(tree, f), (*path, jax.tree_util.GetAttrKey(f)))
                           for f in tree._fields}}
    if isinstance(tree, (list, tuple)):
        kind = "list" if isinstance(tree, list) else "tuple"
        return {kind: [_skeleton(v, (*path, jax.tree_util.SequenceKey(i)))
                       for i, v in enumerate(tree)]}
    return {"leaf": path_str(path)}


def _rebuild(skeleton: Any, leaves: dict[str, Any]) -> Any:
    """The inverse of :func:`_skeleton` with the leaves of ``leaves``."""
    if "namedtuple" in skeleton:
        module, name = skeleton["namedtuple"].split(":")
        if not module.startswith("jaxmaml."):
            raise ValueError(f"{module}: only jaxmaml NamedTuples are loaded.")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{f: _rebuild(v, leaves) for f, v in skeleton["fields"].items()})
    (kind, value), = skeleton.items()
    if kind == "none":
        return None
    if kind == "leaf":
        return leaves[value]
    if kind == "dict":
        return {k: _rebuild(v, leaves) for k, v in value.items()}
    if kind in ("list", "tuple"):
        items = [_rebuild(v, leaves) for v in value]
        return items if kind == "list" else tuple(items)
    raise ValueError(f"unknown node {kind!r} in a saved structure.")


def _flat(tree: Any) -> dict[str, np.ndarray]:
    return {path_str(p): np.ascontiguousarray(np.asarray(jax.device_get(x)))
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _shared_with_encoder(task: dict[str, np.ndarray], encoder: dict[str, np.ndarray]
                         ) -> list[str]:
    """Task leaves ``encoder/<key>`` equal (bit for bit) to the encoder's ``<key>``."""
    shared = []
    for key, x in task.items():
        sub = key[len(ENCODER_DIR) + 1:] if key.startswith(ENCODER_DIR + "/") else None
        e = encoder.get(sub) if sub is not None else None
        if e is not None and e.shape == x.shape and e.dtype == x.dtype and np.array_equal(
                e.view(np.uint8), x.view(np.uint8)):
            shared.append(key)
    return shared


# ---------------------------------------------------------------------------- labels
def _label_json(c: Any) -> dict:
    kind = next((k for k, t in LABEL_TYPES.items() if type(c) is t), None)
    if kind is None:
        raise ValueError(f"class {c!r} ({type(c).__name__}) cannot be saved: use str, int, "
                         "float or bool labels.")
    return {"type": kind, "value": c}


def _settings(clf) -> dict[str, Any]:
    """Every constructor option of ``clf`` (the keyword arguments after ``loaded``)."""
    names = [p for p in inspect.signature(type(clf).__init__).parameters
             if p not in ("self", "loaded")]
    values = {n: getattr(clf, n) for n in names}
    return {n: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v  # options groups
            for n, v in values.items()}


# ---------------------------------------------------------------------------- save / load
def save_fitted(clf, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write fitted ``clf`` to ``out_dir`` (see the module docstring). Raises
    ``ValueError`` if it is not fitted, :class:`~jaxmaml.run.paths.OutputWriteError` on a
    write error (nothing replaced)."""
    from safetensors.numpy import save_file

    if clf.task_params_ is None:
        raise ValueError("this classifier is not fitted: call fit(texts, labels) before "
                         "save_pretrained (an unfitted model is saved by `jaxmaml export`).")
    check_output_dir(out_dir, "save_pretrained")
    source = clf._loaded
    task = _flat(clf.task_params_)
    shared = _shared_with_encoder(task, _flat(clf.meta_params["encoder"]))
    info = {"format": FORMAT, "algorithm": clf.algorithm, "step": clf.step,
            "classes": [_label_json(c) for c in clf.classes_.tolist()],
            "settings": _settings(clf), "encoder": ENCODER_DIR,
            "task_params": {"structure": _skeleton(clf.task_params_), "shared": shared},
            "support": None if clf.support_ is None else _skeleton(clf.support_)}
    files = jaxmaml_files(clf.cfg, clf.meta_params, source.seq_len, clf.step, clf.seq_len)

    def fill(tmp: Path) -> None:
        save_pretrained(clf.meta_params["encoder"], clf.cfg.model, tmp / ENCODER_DIR,
                        source.tokenizer_dir, extra_files=files)
        save_file({k: v for k, v in task.items() if k not in shared},
                  str(tmp / TASK_PARAMS_FILE))
        if clf.support_ is not None:
            save_file(_flat(clf.support_), str(tmp / SUPPORT_FILE))
        (tmp / FITTED_FILE).write_text(json.dumps(info, indent=2) + "\n")

    try:
        return write_atomically(out_dir, fill, overwrite=overwrite)
    except (FileExistsError, FileNotFoundError):
        raise
    except OSError as e:
        raise write_error(e, "the classifier", out_dir) from e


def load_fitted(cls, directory: str | Path, **kwargs):
    """A fitted ``cls`` (FewShotClassifier) from ``directory``; ``kwargs`` override saved
    settings that do not change the fit (``batch_size``, ``seq_len``)."""
    import jax.numpy as jnp
    from safetensors.numpy import load_file

    directory = Path(directory)
    info = json.loads((directory / FITTED_FILE).read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{directory / FITTED_FILE} has format {info.get('format')!r}; this "
                         f"jaxmaml reads {FORMAT!r} (fit and save the classifier again).")
    settings = dict(info["settings"])
    changed = [k for k, v in kwargs.items() if k in settings and k not in ("batch_size",
                                                                            "seq_len")
               and v != settings[k]]
    if changed:
        raise ValueError(f"{changed[0]}={kwargs[changed[0]]!r} differs from the saved fit "
                         f"({settings[changed[0]]!r}); fit a new classifier instead.")
    settings.update(kwargs)
    if isinstance(settings.get("finetune"), dict):
        settings["finetune"] = FinetuneOptions(**settings["finetune"])
    clf = cls(load_export(directory / info["encoder"], settings.get("seq_len")), **settings)
    leaves = {k: jnp.asarray(v) for k, v in load_file(str(directory / TASK_PARAMS_FILE)).items()}
    encoder = flatten(clf.meta_params["encoder"])
    for key in info["task_params"]["shared"]:
        leaves[key] = encoder[key[len(ENCODER_DIR) + 1:]]
    classes = [LABEL_TYPES[c["type"]](c["value"]) for c in info["classes"]]
    clf.task_params_ = _rebuild(info["task_params"]["structure"], leaves)
    clf.classes_ = classes_array(classes)
    if info.get("support") is not None:
        rows = {k: jnp.asarray(v) for k, v in load_file(str(directory / SUPPORT_FILE)).items()}
        clf.support_ = _rebuild(info["support"], rows)
    clf._predict_cfg = clf.cfg.replace(way=len(classes))
    return clf
