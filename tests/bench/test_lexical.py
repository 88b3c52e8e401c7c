"""benchmarks/lexical.py: tf-idf rows of word pieces (numpy == jax == a hand count), the
hybrid cosine is the weighted sum of the two cosines, and weight 0 reads out exactly the
fine-tuned head's soft k-means (the product's)."""

import jax.numpy as jnp
import numpy as np
import pytest
from bench_scripts import load_script


def test_tfidf_rows_match_a_hand_count_in_numpy_and_jax():
    lex = load_script("lexical")
    ids = np.array([[1, 7, 7, 9, 2, 0], [1, 9, 5, 2, 0, 0]])  # 0-2: special
    idf = np.array([0, 0, 0, 0, 0, 2.0, 0, 3.0, 0, 1.5], np.float32)  # 5, 7, 9 count
    want = np.zeros((2, 10))
    want[0, 7], want[0, 9] = np.log(3) * 3.0, np.log(2) * 1.5
    want[1, 9], want[1, 5] = np.log(2) * 1.5, np.log(2) * 2.0
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(lex.lexical(ids, idf), want, rtol=1e-6)
    np.testing.assert_allclose(lex.lexical(jnp.asarray(ids), jnp.asarray(idf), jnp), want,
                               rtol=1e-6)
    keep = (idf > 0).astype(np.float32)
    np.testing.assert_allclose(lex.idf(jnp.asarray(ids), jnp.asarray(keep), jnp),
                               lex.idf(ids, keep), rtol=1e-6)
    # piece 9 is in both rows, 5 and 7 in one: idf = log(3 / (1 + df)) + 1
    np.testing.assert_allclose(lex.idf(ids, keep)[[5, 7, 9]],
                               np.log(3 / np.array([2, 2, 3])) + 1, rtol=1e-6)


@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_hybrid_cosine_is_the_weighted_sum(weight):
    lex = load_script("lexical")
    rng = np.random.default_rng(0)
    d, w = rng.normal(size=(4, 6)), rng.random((4, 9))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    h = lex.hybrid(d, w, weight)
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(h @ h.T, (1 - weight) * dn @ dn.T + weight * w @ w.T,
                               rtol=1e-6, atol=1e-7)


def test_weight_0_is_the_products_transductive_readout(tiny_config, tiny_params):
    """On a tiny fine-tuned task: the lexical readout at weight 0 predicts what
    ``finetune_eval.task_scores`` (the product) does, both ways."""
    from jaxmaml.meta.config import MetaConfig
    from jaxmaml.meta.finetune import FinetuneOptions, finetune_adapt
    from jaxmaml.run import finetune_eval
    from jaxmaml.types import Examples

    lex = load_script("lexical")
    cfg = MetaConfig(model=tiny_config, way=3, pooling="mean")
    enc = tiny_params
    rng = np.random.default_rng(1)

    def rows(labels):
        ids = rng.integers(5, cfg.model.vocab_size, (len(labels), 8)).astype(np.int32)
        ids[:, 0] = 101
        return Examples(ids, np.ones_like(ids), np.array(labels, np.int32),
                        np.ones(len(labels), np.float32))

    support, query = rows([0, 0, 1, 1, 2, 2]), rows([0, 1, 2, 0, 1, 2, 2, 1])
    opts = FinetuneOptions(part="top_k", top_k=1, steps=3, lr=1e-3)
    params = finetune_adapt(enc, support, 3, opts, cfg)
    lex.IDF["idf"] = np.ones(cfg.model.vocab_size, np.float32)
    want = finetune_eval.task_scores(params, support, query, opts, cfg, ("plain", "trans"))
    got = lex.lexical_task_scores(0.0)(params, support, query, opts, cfg, ("plain", "trans"))
    for k in want:
        assert float(got[k]) == pytest.approx(float(want[k]))


def test_report_pairs_each_file_with_its_base(tmp_path):
    import json

    def write(name, accs):
        rows = [{"batch": "balanced", "shot": 5, "per_episode": {"finetune_names_trans": accs}}]
        (tmp_path / name).write_text(json.dumps({"command": "x", "rows": rows}))

    write("V-base.json", [0.5, 0.6, 0.7])
    write("V-w0.4.json", [0.6, 0.6, 0.8])
    table = load_script("lexical").report(tmp_path)
    assert "| V-w0.4 | `finetune_names_trans` | balanced | – | +6.7 ± 6.5 (3) |" in table
    assert "V-base |" not in table
