"""A pure-functional Flax BERT encoder whose params mirror Hugging Face names.

``model_type="mpnet"`` is the same encoder with MPNet's three differences (Song et al.
2020; :mod:`jaxmaml.models.mpnet`): no token types, its position ids, and a relative
position bias (``encoder/relative_attention_bias``, shared by every layer). Its params use the BERT names below (:mod:`jaxmaml.models.hf` renames
MPNet's ``attention.attn.q`` etc. on the way in and out), so everything that addresses
layers by name (LoRA, the adapted top layers, the frozen bottom) serves both.

The params pytree is a plain nested dict, e.g.::

    embeddings/word_embeddings/embedding              [vocab, hidden]
    encoder/layer/0/attention/self/query/kernel        [hidden, hidden]   (HF weight.T)
    encoder/layer/0/attention/output/LayerNorm/scale   [hidden]           (HF weight)
    pooler/dense/kernel                                [hidden, hidden]

so converting from/to a Hugging Face checkpoint is renames and transposes only
(see :mod:`jaxmaml.models.hf`). The Flax modules never leave this file: callers use
:func:`encode`, :func:`pool` and :func:`init_params`, which take and return plain pytrees.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmaml.models import mpnet, precision

Params = dict[str, Any]
PRESETS = ("tiny", "mini", "small", "base")  # BertConfig.preset names
MODEL_TYPES = ("bert", "mpnet")

_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Mirror of ``transformers.BertConfig`` fields we use, plus compute options.

    ``dtype`` is the compute dtype (``"float32"`` or ``"bfloat16"``); params stay float32.
    Frozen and hashable so it can be a static argument of jitted functions.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    add_pooling_layer: bool = True
    dtype: str = "float32"
    model_type: str = "bert"  # or "mpnet" (module docstring)
    relative_attention_num_buckets: int = 32  # mpnet: rows of the relative position bias

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type={self.model_type!r}: use one of {MODEL_TYPES}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of "
                f"num_attention_heads={self.num_attention_heads}; pick sizes that divide."
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"hidden_act={self.hidden_act!r} is not supported; use one of {sorted(_ACTIVATIONS)}."
            )
        if self.dtype not in ("float32", "bfloat16", "float64"):
            raise ValueError(f"dtype={self.dtype!r}: use 'float32' or 'bfloat16' "
                             "('float64' for numerical tests under jax.enable_x64).")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def replace(self, **changes) -> "BertConfig":
        return dataclasses.replace(self, **changes)

    # Presets: shapes of the google/bert_uncased_L-*_H-* family (Turc et al., 2019).
    @classmethod
    def tiny(cls, **kw) -> "BertConfig":
        """2 layers, hidden 32: unit tests. Small vocab keeps tests fast."""
        base = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64)
        return cls(**{**base, **kw})

    @classmethod
    def mini(cls, **kw) -> "BertConfig":
        """4 layers, hidden 256 (bert-mini shape)."""
        base = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                    intermediate_size=1024)
        return cls(**{**base, **kw})

    @classmethod
    def small(cls, **kw) -> "BertConfig":
        """4 layers, hidden 512 (bert-small shape)."""
        base = dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
                    intermediate_size=2048)
        return cls(**{**base, **kw})

    @classmethod
    def base(cls, **kw) -> "BertConfig":
        """12 layers, hidden 768 (bert-base shape)."""
        return cls(**kw)

    @classmethod
    def preset(cls, name: str, **kw) -> "BertConfig":
        """The :data:`PRESETS` shape ``name`` (``tiny``, ``mini``, ``small``, ``base``)."""
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; use one of {sorted(PRESETS)} "
                             "or a path to a Hugging Face BERT or MPNet directory.")
        return getattr(cls, name)(**kw)


def _mixed(cfg: BertConfig) -> bool:
    """bf16 mixed precision: bf16 matmul operands, everything else float32
    (:mod:`jaxmaml.models.precision`)."""
    return cfg.dtype == "bfloat16"


def _act_dtype(cfg: BertConfig):
    """dtype of activations between matmuls: float32 under mixed precision."""
    return jnp.dtype(jnp.float32 if _mixed(cfg) else cfg.dtype)


class _MixedDense(nn.Module):
    """``nn.Dense``'s params (``kernel`` ``[in, out]``, ``bias``) with a bf16 matmul."""

    features: int
    kernel_init: nn.initializers.Initializer

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features),
                            jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return precision.dense(x, kernel, bias)


def _dense(cfg: BertConfig, features: int, name: str) -> nn.Module:
    init = nn.initializers.truncated_normal(cfg.initializer_range)
    if _mixed(cfg):
        return _MixedDense(features, init, name=name)
    return nn.Dense(features, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.float32,
                    kernel_init=init, name=name)


def _layer_norm(cfg: BertConfig, name: str = "LayerNorm") -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=_act_dtype(cfg),
                        param_dtype=jnp.float32, name=name)


class _Embeddings(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, input_ids, token_type_ids, deterministic):
        cfg = self.cfg
        init = nn.initializers.truncated_normal(cfg.initializer_range)

        def embed(n, name):
            return nn.Embed(n, cfg.hidden_size, embedding_init=init, dtype=_act_dtype(cfg),
                            param_dtype=jnp.float32, name=name)

        positions = (mpnet.positions(input_ids) if cfg.model_type == "mpnet"
                     else jnp.arange(input_ids.shape[-1]))
        x = (embed(cfg.vocab_size, "word_embeddings")(input_ids)
             + embed(cfg.max_position_embeddings, "position_embeddings")(positions))
        if cfg.model_type == "bert":
            x = x + embed(cfg.type_vocab_size, "token_type_embeddings")(token_type_ids)
        x = _layer_norm(cfg)(x)
        return nn.Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)


class _SelfAttention(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, x, attention_mask, deterministic, bias=None):
        cfg = self.cfg
        *batch, length, _ = x.shape
        split = lambda t: t.reshape(*batch, length, cfg.num_attention_heads, cfg.head_dim)
        q = split(_dense(cfg, cfg.hidden_size, "query")(x))
        k = split(_dense(cfg, cfg.hidden_size, "key")(x))
        v = split(_dense(cfg, cfg.hidden_size, "value")(x))
        einsum = precision.mixed_einsum if _mixed(cfg) else jnp.einsum
        scores = einsum("...qhd,...khd->...hqk", q, k) / jnp.sqrt(cfg.head_dim).astype(q.dtype)
        # Additive mask with the dtype minimum, like HF eager attention: padded keys get
        # exactly zero probability after softmax, so padding never leaks into real tokens.
        scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))  # softmax in >= f32
        if bias is not None:  # mpnet: [heads, L, L] relative position bias
            scores = scores + bias.astype(scores.dtype)
        keep = attention_mask[..., None, None, :].astype(bool)
        scores = jnp.where(keep, scores, jnp.finfo(scores.dtype).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        probs = nn.Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic=deterministic)
        out = einsum("...hqk,...khd->...qhd", probs, v)
        return out.reshape(*batch, length, cfg.hidden_size)


class _Layer(nn.Module):
    """HF ``BertLayer``: attention block, then intermediate (dense + act) and output."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, x, attention_mask, deterministic, bias=None):
        drop = lambda t: nn.Dropout(self.cfg.hidden_dropout_prob)(t, deterministic=deterministic)
        attn = _AttentionBlock(self.cfg, name="attention")(x, attention_mask, deterministic,
                                                             bias)
        inter = _Intermediate(self.cfg, name="intermediate")(attn)
        return _Output(self.cfg, name="output")(inter, attn, drop)


class _AttentionBlock(nn.Module):
    """HF ``BertAttention``: self-attention, then ``output`` (dense, dropout, residual, LN)."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, x, attention_mask, deterministic, bias=None):
        cfg = self.cfg
        h = _SelfAttention(cfg, name="self")(x, attention_mask, deterministic, bias)
        drop = lambda t: nn.Dropout(cfg.hidden_dropout_prob)(t, deterministic=deterministic)
        return _Output(cfg, name="output")(h, x, drop)


class _Intermediate(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, x):
        h = _dense(self.cfg, self.cfg.intermediate_size, "dense")(x)
        return _ACTIVATIONS[self.cfg.hidden_act](h)


class _Output(nn.Module):
    """dense → dropout → residual add → LayerNorm (HF ``BertSelfOutput`` / ``BertOutput``)."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, h, residual, drop):
        h = drop(_dense(self.cfg, self.cfg.hidden_size, "dense")(h))
        return _layer_norm(self.cfg)(h + residual)


class _LayerStack(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, x, attention_mask, deterministic, bias=None):
        # Children named "0", "1", ... give the param path encoder/layer/<i>/..., the same
        # as HF's encoder.layer.<i>.
        for i in range(self.cfg.num_hidden_layers):
            x = _Layer(self.cfg, name=str(i))(x, attention_mask, deterministic, bias)
        return x


class _Encoder(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, x, attention_mask, deterministic):
        cfg, bias = self.cfg, None
        if cfg.model_type == "mpnet":
            table = self.param("relative_attention_bias", lambda key: {
                "embedding": nn.initializers.truncated_normal(cfg.initializer_range)(
                    key, (cfg.relative_attention_num_buckets, cfg.num_attention_heads))})
            bias = mpnet.relative_bias(table["embedding"], x.shape[-2])
        return _LayerStack(self.cfg, name="layer")(x, attention_mask, deterministic, bias)


class _Pooler(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, hidden):
        return jnp.tanh(_dense(self.cfg, self.cfg.hidden_size, "dense")(hidden[..., 0, :]))


class _Bert(nn.Module):
    cfg: BertConfig

    def setup(self):
        self.embeddings = _Embeddings(self.cfg)
        self.encoder = _Encoder(self.cfg)
        if self.cfg.add_pooling_layer:
            self.pooler = _Pooler(self.cfg)

    def __call__(self, input_ids, attention_mask, token_type_ids, deterministic=True):
        x = self.embeddings(input_ids, token_type_ids, deterministic)
        x = self.encoder(x, attention_mask, deterministic)
        if self.cfg.add_pooling_layer and self.is_initializing():
            self.pooler(x)  # create pooler params at init
        return x

    def pool(self, hidden):
        return self.pooler(hidden)


def init_params(config: BertConfig, key: jax.Array) -> Params:
    """Random BERT params (truncated normal, std ``initializer_range``), deterministic by key.

    Returns a plain nested dict (no FrozenDict) mirroring HF names.
    """
    ids = jnp.zeros((1, 2), jnp.int32)
    variables = _Bert(config).init(key, ids, jnp.ones_like(ids), jnp.zeros_like(ids))
    return jax.tree.map(lambda x: x, dict(variables["params"]))


def encode(params: Params, config: BertConfig, input_ids: jax.Array, attention_mask: jax.Array,
           token_type_ids: jax.Array | None = None, *, dropout_key: jax.Array | None = None
           ) -> jax.Array:
    """Last hidden states of the BERT encoder.

    Args:
      params: BERT params pytree (see module docstring).
      config: the model's :class:`BertConfig` (static).
      input_ids: int ``[..., seq_len]`` token ids.
      attention_mask: ``[..., seq_len]``, 1 for real tokens, 0 for padding.
      token_type_ids: optional int ``[..., seq_len]``; zeros when omitted.
      dropout_key: a PRNG key turns dropout on (training); ``None`` means deterministic.

    Returns:
      ``[..., seq_len, hidden]`` hidden states in the compute dtype (under bf16 mixed
      precision the layers run in float32 between bf16 matmuls; the result is rounded once).
    """
    if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
    rngs = None if dropout_key is None else {"dropout": dropout_key}
    hidden = _Bert(config).apply({"params": params}, input_ids, attention_mask, token_type_ids,
                                 deterministic=dropout_key is None, rngs=rngs)
    return hidden.astype(config.dtype)


def embed(params: Params, config: BertConfig, input_ids: jax.Array,
          token_type_ids: jax.Array | None = None) -> jax.Array:
    """Embedding block only (word + position (+ token type), LayerNorm): ``[..., L, H]``."""
    if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
    return _Embeddings(config).apply({"params": params["embeddings"]}, input_ids,
                                     token_type_ids, True)


def run_layers(params: Params, config: BertConfig, hidden: jax.Array, attention_mask: jax.Array,
               start: int, stop: int) -> jax.Array:
    """Transformer layers ``start..stop-1`` (deterministic) on ``hidden`` ``[..., L, H]``.

    ``run_layers(p, c, embed(p, c, ids), mask, 0, c.num_hidden_layers)`` equals
    :func:`encode`; the split lets the inner loop cache the output of layers it does not
    adapt instead of recomputing them every inner step.
    """
    layers, bias = params["encoder"]["layer"], None
    if config.model_type == "mpnet" and start < stop:
        bias = mpnet.relative_bias(params["encoder"]["relative_attention_bias"]["embedding"],
                                   hidden.shape[-2])
    for i in range(start, stop):
        hidden = _Layer(config).apply({"params": layers[str(i)]}, hidden, attention_mask, True,
                                      bias)
    return hidden


def pool(params: Params, config: BertConfig, hidden: jax.Array) -> jax.Array:
    """HF pooler output: ``tanh(dense(hidden[..., 0, :]))`` -> ``[..., hidden]``."""
    if "pooler" not in params:
        raise ValueError("these params have no pooler (config.add_pooling_layer=False).")
    return _Bert(config).apply({"params": params}, hidden, method=_Bert.pool)


def num_params(params: Params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
