"""benchmarks/init_ensemble.py: the two inits' class probabilities are averaged before the
argmax (the ensemble can be right where each init alone is wrong), other methods untouched."""

import types

import numpy as np
from bench_scripts import load_script


def test_ensemble_scores_the_argmax_of_the_summed_probabilities():
    mod = load_script("init_ensemble")
    # one task, two queries of class 0 and 1; each init is sure of a wrong class on one query
    a = np.array([[[0.45, 0.55], [0.1, 0.9]]])
    b = np.array([[[0.9, 0.1], [0.6, 0.4]]])
    other = np.array([0.5], np.float32)

    def score(prep, methods, index, way):
        return {"finetune_names": a, "meta_learned_finetune_names": b,
                "finetune_names_trans": other}

    index = types.SimpleNamespace(query_labels=np.array([[0, 1]]))
    out = mod.ensemble_score(score)(None, [], index, 2)
    assert ((a.argmax(-1) == index.query_labels).mean() == 0.5
            and (b.argmax(-1) == index.query_labels).mean() == 0.5)
    np.testing.assert_array_equal(out["finetune_names"], [1.0])
    np.testing.assert_array_equal(out["meta_learned_finetune_names"], [1.0])
    assert out["finetune_names_trans"] is other
