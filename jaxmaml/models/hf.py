"""Hugging Face BERT and MPNet directories <-> jaxmaml params (renames and transposes only).

``load_pretrained`` reads ``config.json`` + ``model.safetensors`` (or ``pytorch_model.bin``
when torch is installed); ``save_pretrained`` writes a directory that
``transformers.AutoModel.from_pretrained`` loads offline. Both check every tensor and name
the offending ones in a :class:`HFCheckpointError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np

from jaxmaml.models.bert import BertConfig, init_params, MODEL_TYPES, Params
from jaxmaml.tree import flatten, unflatten

# Non-parameter buffers some checkpoints carry; never mapped.
_BUFFERS = ("embeddings.position_ids",)
# Task heads of BertFor* / MPNetFor* checkpoints: not part of the encoder, dropped.
_HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.", "lm_head.")
# MPNet's names inside a layer -> ours (BERT's; jaxmaml.models.bert)
_MPNET_NAMES = ((".attention.attn.q.", ".attention.self.query."),
                (".attention.attn.k.", ".attention.self.key."),
                (".attention.attn.v.", ".attention.self.value."),
                (".attention.attn.o.", ".attention.output.dense."),
                (".attention.LayerNorm.", ".attention.output.LayerNorm."))
# Files copied from a tokenizer directory when exporting.
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json")
_CONFIG_FIELDS = [f.name for f in dataclasses.fields(BertConfig)
                  if f.name not in ("add_pooling_layer", "dtype")]
_MPNET_UNUSED = ("type_vocab_size",)  # fields an MPNetConfig does not have


class HFCheckpointError(ValueError):
    """A directory that is not a usable Hugging Face BERT or MPNet checkpoint."""


def _from_mpnet(name: str) -> str:
    for theirs, ours in _MPNET_NAMES:
        name = name.replace(theirs, ours)
    return name


def _to_mpnet(name: str) -> str:
    for theirs, ours in _MPNET_NAMES:
        name = name.replace(ours, theirs)
    return name


def _hf_name(path: tuple[str, ...]) -> tuple[str, bool]:
    """Our param path -> (HF tensor name, whether the array is transposed)."""
    *parents, leaf = path
    if leaf == "kernel":
        return ".".join([*parents, "weight"]), True
    if leaf in ("scale", "embedding"):
        return ".".join([*parents, "weight"]), False
    return ".".join(path), False


def _flat(params: Params) -> dict[tuple[str, ...], jax.Array]:
    """``{("encoder", "layer", "0", ...): leaf}`` (:func:`jaxmaml.tree.flatten`, split)."""
    return {tuple(k.split("/")): leaf for k, leaf in flatten(params).items()}


def _unflat(flat: dict[tuple[str, ...], np.ndarray]) -> Params:
    return unflatten({"/".join(path): leaf for path, leaf in flat.items()})


def config_from_hf(hf_config: dict, **overrides) -> BertConfig:
    """A :class:`BertConfig` from a parsed HF ``config.json`` (``model_type`` ``bert`` or
    ``mpnet``)."""
    model_type = hf_config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise HFCheckpointError(
            f"config.json has model_type={model_type!r}; jaxmaml loads BERT and MPNet "
            f"checkpoints (model_type {' or '.join(map(repr, MODEL_TYPES))}) only.")
    fields = {k: hf_config[k] for k in _CONFIG_FIELDS if k in hf_config}
    if model_type == "mpnet":  # MPNetConfig's defaults where the file leaves a field out
        fields = {"layer_norm_eps": 1e-5, "pad_token_id": 1, "max_position_embeddings": 514,
                  **fields, "type_vocab_size": 0}
    return BertConfig(**{**fields, **overrides})


def config_to_hf(config: BertConfig) -> dict:
    """A HF ``config.json`` dict for ``config`` (``BertModel`` or ``MPNetModel``)."""
    if config.model_type == "mpnet":
        out = {k: getattr(config, k) for k in _CONFIG_FIELDS if k not in _MPNET_UNUSED}
        out.update(architectures=["MPNetModel"], torch_dtype="float32",
                   bos_token_id=0, eos_token_id=2)
        return out
    out = {k: getattr(config, k) for k in _CONFIG_FIELDS
           if k not in ("relative_attention_num_buckets",)}
    out.update(model_type="bert", architectures=["BertModel"], torch_dtype="float32",
               position_embedding_type="absolute")
    return out


def _read_tensors(model_dir: Path) -> dict[str, np.ndarray]:
    st = model_dir / "model.safetensors"
    if st.exists():
        from safetensors.numpy import load_file
        return load_file(str(st))
    pt = model_dir / "pytorch_model.bin"
    if pt.exists():
        try:
            import torch
        except ImportError as e:
            raise HFCheckpointError(
                f"{model_dir} has only pytorch_model.bin, which needs torch to read; "
                "install it with `pip install torch==2.13.0` or convert to safetensors.") from e
        state = torch.load(str(pt), map_location="cpu", weights_only=True)
        return {k: v.float().numpy() for k, v in state.items()}
    raise HFCheckpointError(f"{model_dir} has neither model.safetensors nor pytorch_model.bin.")


def load_pretrained(path: str | os.PathLike, **config_overrides) -> tuple[Params, BertConfig]:
    """Load a local HF BERT or MPNet directory as ``(params, config)``.

    Linear weights are transposed to Flax ``[in, out]`` kernels; a ``bert.`` prefix (from
    ``BertFor*`` checkpoints) is stripped; task heads and the ``position_ids`` buffer are
    ignored. Raises :class:`HFCheckpointError` naming every missing, unexpected or
    wrongly-shaped tensor.
    """
    model_dir = Path(path)
    cfg_file = model_dir / "config.json"
    if not cfg_file.exists():
        raise HFCheckpointError(f"{model_dir} is not a Hugging Face model directory: "
                                "no config.json in it.")
    hf_config = json.loads(cfg_file.read_text())
    model_type = hf_config.get("model_type")
    if model_type not in MODEL_TYPES:  # say so before looking for tensors
        config_from_hf(hf_config)
    tensors = {k.removeprefix(f"{model_type}."): v
               for k, v in _read_tensors(model_dir).items()}
    if model_type == "mpnet":
        tensors = {_from_mpnet(k): v for k, v in tensors.items()}
    tensors = {k.replace(".gamma", ".weight").replace(".beta", ".bias"): v
               for k, v in tensors.items()
               if not k.endswith(_BUFFERS) and not k.startswith(_HEAD_PREFIXES)}
    has_pooler = any(k.startswith("pooler.") for k in tensors)
    config = config_from_hf(hf_config, add_pooling_layer=has_pooler, **config_overrides)
    abstract = _flat(jax.eval_shape(lambda: init_params(config, jax.random.key(0))))

    flat, missing, bad_shape = {}, [], []
    for path, spec in abstract.items():
        name, transposed = _hf_name(path)
        if name not in tensors:
            missing.append(name)
            continue
        arr = np.asarray(tensors.pop(name), dtype=np.float32)
        arr = arr.T if transposed else arr
        if arr.shape != spec.shape:
            shown = arr.T.shape if transposed else arr.shape
            want = tuple(reversed(spec.shape)) if transposed else spec.shape
            bad_shape.append(f"{name}: has {shown}, config.json implies {want}")
            continue
        flat[path] = np.ascontiguousarray(arr)
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if tensors:
        problems.append(f"unexpected tensors: {', '.join(sorted(tensors))}")
    if bad_shape:
        problems.append(f"wrong shapes: {'; '.join(bad_shape)}")
    if problems:
        raise HFCheckpointError(f"{model_dir} does not match its config.json as "
                                f"{'an MPNet' if model_type == 'mpnet' else 'a BERT'}: "
                                + " | ".join(problems))
    return jax.tree.map(jax.numpy.asarray, _unflat(flat)), config


def to_hf_state_dict(params: Params, model_type: str = "bert") -> dict[str, np.ndarray]:
    """Our params -> HF ``BertModel`` (``MPNetModel``) state dict (numpy, torch layout)."""
    out = {}
    for path, leaf in _flat(params).items():
        name, transposed = _hf_name(path)
        if model_type == "mpnet":
            name = _to_mpnet(name)
        arr = np.asarray(jax.device_get(leaf), dtype=np.float32)
        out[name] = np.ascontiguousarray(arr.T if transposed else arr)
    return out


def _umask_modes(root: Path) -> None:
    """Directories 0777 and files 0666, less the process umask (as ``mkdir``/``open`` make)."""
    umask = os.umask(0)
    os.umask(umask)
    for d, dirs, files in os.walk(root):
        os.chmod(d, 0o777 & ~umask)
        for f in files:
            os.chmod(os.path.join(d, f), 0o666 & ~umask)


def write_atomically(out_dir: str | os.PathLike, fill, overwrite: bool = False) -> Path:
    """Create ``out_dir`` by calling ``fill(tmp_dir)`` on a sibling temp dir, then renaming.

    A failure inside ``fill`` leaves nothing behind; an existing non-empty ``out_dir`` is
    refused unless ``overwrite``. The result gets the permissions of a directory made with
    ``mkdir`` under the process umask (the temp dir's 0700 would keep others out).
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose another directory or "
                              "pass overwrite=True (CLI: --overwrite).")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        fill(tmp)
        _umask_modes(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, old)
            os.rename(tmp, out)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:  # a file (or link) replaced by the directory
                old.unlink()
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def save_pretrained(params: Params, config: BertConfig, out_dir: str | os.PathLike,
                    tokenizer_dir: str | os.PathLike | None = None, *, overwrite: bool = False,
                    extra_files: dict[str, str | bytes] | None = None) -> Path:
    """Write a HF BERT (MPNet) directory (config.json, model.safetensors, tokenizer files).

    ``transformers.AutoModel.from_pretrained(out_dir)`` loads it offline. Written atomically
    (temp dir + rename). ``extra_files`` maps file names (relative paths; subdirectories are
    created) to text or bytes (e.g. a README model card).
    """
    from safetensors.numpy import save_file

    if "pooler" in params and not config.add_pooling_layer:
        config = dataclasses.replace(config, add_pooling_layer=True)
    state = to_hf_state_dict(params, config.model_type)
    tok_files = []
    if tokenizer_dir is not None:
        tok_files = [Path(tokenizer_dir) / f for f in TOKENIZER_FILES
                     if (Path(tokenizer_dir) / f).exists()]
        if not tok_files:
            raise HFCheckpointError(f"{tokenizer_dir} has no tokenizer files "
                                    f"(looked for {', '.join(TOKENIZER_FILES)}).")

    def fill(tmp: Path):
        (tmp / "config.json").write_text(json.dumps(config_to_hf(config), indent=2) + "\n")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        for f in tok_files:
            shutil.copy2(f, tmp / f.name)
        for name, content in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                (tmp / name).write_text(content)

    return write_atomically(out_dir, fill, overwrite=overwrite)
