"""benchmarks/init_ensemble.py: the two inits' class probabilities are averaged before the
argmax (the ensemble can be right where each init alone is wrong), other methods untouched."""

import importlib.util
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def test_ensemble_scores_the_argmax_of_the_summed_probabilities():
    spec = importlib.util.spec_from_file_location("init_ensemble",
                                                  ROOT / "benchmarks/init_ensemble.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
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
