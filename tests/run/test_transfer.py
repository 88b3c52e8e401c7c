"""benchmarks/transfer.py (data specs, in-domain / held-out roles, table) and the tables that
claim gains against the best baseline (export model card)."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from bench_scripts import load_script

from jaxmaml.run.protocol import BASELINES, best_baseline, gain_over_baselines, gain_text
from jaxmaml.run.export import eval_table

ROOT = Path(__file__).resolve().parents[2]
transfer = load_script("transfer")


def _r(mean):
    return {"mean": mean, "ci95": 0.01}


RESULTS = {"meta_learned": _r(0.70), "meta_learned_centroid": _r(0.90),
           "pretrained_finetune": _r(0.50), "pretrained_adapt_cosine": _r(0.62),
           "cosine_centroid": _r(0.60), "linear_probe": _r(0.64), "nearest_centroid": _r(0.40)}


def test_gain_is_against_the_best_baseline_not_the_meta_learned_centroid():
    assert best_baseline(RESULTS) == ("linear_probe", 0.64)
    assert gain_over_baselines(RESULTS) == pytest.approx(6.0)
    assert gain_over_baselines({"meta_learned": _r(0.5)}) is None
    assert gain_text({"results": RESULTS}) == "+6.0"  # no gains: no paired CI
    assert gain_text({"results": RESULTS}, "meta_learned_centroid") is None
    paired = {"results": RESULTS, "gains": {
        "meta_learned": {"vs": "linear_probe", "mean": 0.06, "ci95": 0.004},
        "meta_learned_centroid": {"vs": "cosine_centroid", "mean": 0.3, "ci95": 0.012}}}
    assert gain_text(paired) == "+6.0 ± 0.4"
    assert gain_text(paired, "meta_learned_centroid") == "+30.0 ± 1.2"
    assert "meta_learned_centroid" not in BASELINES and "meta_learned_probe" not in BASELINES


def test_model_card_table_shows_every_baseline_and_the_gain():
    row = {"data": "wordnet", "split": "meta_test", "way": 5, "shot": 1, "query": 15,
           "episodes": 600, "results": RESULTS}
    table = eval_table([row])
    for label in ("original encoder, cosine centroid", "original encoder, linear probe",
                  "pretrained + inner loop, cosine head", "meta-learned encoder, cosine centroid",
                  "original encoder, euclidean centroid"):
        assert label in table
    assert "+6.0 points vs original encoder, linear probe" in table
    paired = {**row, "gains": {"meta_learned": {"vs": "linear_probe", "mean": 0.06,
                                                 "ci95": 0.004}}}
    assert "+6.0 ± 0.4 points vs original encoder, linear probe" in eval_table([paired])
    assert len({line.count("|") for line in table.splitlines()}) == 1  # well-formed


def test_data_specs():
    assert transfer.parse_data_spec("meta_test")["source"] is None
    s = transfer.parse_data_spec("held=meta_test:debian")
    assert (s["name"], s["source"], s["source_name"]) == ("held", None, "debian")
    s = transfer.parse_data_spec("news=/tmp/x.csv:body:topic")
    assert (s["name"], s["source"], s["text_column"], s["label_column"]) == (
        "news", "/tmp/x.csv", "body", "topic")
    assert transfer.parse_data_spec("wordnet")["name"] == "wordnet"


def test_domain_roles_single_and_multi_source(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text("text,label\n")
    single = SimpleNamespace(data=SimpleNamespace(source="wordnet", sources=()))
    role = lambda cfg, spec: transfer.domain_role(cfg, transfer.parse_data_spec(spec))  # noqa
    assert role(single, "meta_test") == "in-domain"
    assert role(single, "wordnet") == "in-domain"
    assert role(single, str(csv)) == "held-out"
    src = lambda source, role, label: SimpleNamespace(source=source, role=role, label=label)  # noqa
    multi = SimpleNamespace(data=SimpleNamespace(source="wordnet", sources=(
        src("wordnet", "train", "wordnet"), src(str(csv), "train", "a"),
        src("debian", "heldout", "debian"))))
    assert role(multi, "meta_test:wordnet") == "in-domain"
    assert role(multi, "meta_test:debian") == "held-out"
    assert role(multi, "debian") == "held-out"
    assert role(multi, str(csv)) == "in-domain"


def test_markdown_has_a_row_per_run_and_dataset():
    rows = [{"way": 5, "shot": s, "query": 15, "episodes": 600, "run": run, "data_name": d,
             "role": "held-out", "classes": 10, "seq_len": 24, "results": RESULTS}
            for s in (1, 5) for run in ("a", "b") for d in ("x", "y")]
    text = transfer.markdown(rows, "python benchmarks/transfer.py ...")
    assert text.count("## 5-way") == 2
    assert sum(line.startswith("| a | x |") for line in text.splitlines()) == 2
    assert "+6.0 (linear_probe)" in text


def test_smlmt_tasks_mask_one_word_per_text_and_drop_rare_classes():
    """benchmarks/smlmt.py: a class is a word, masked in its texts; a text goes to its rarest
    chosen word only; stop words, short words and words in too few texts are not classes."""
    smlmt = load_script("smlmt")
    texts = ([f"the river bank {i}" for i in range(3)] + [f"a river flood {i}" for i in range(2)]
             + ["flood and river", "cat"])
    rows = smlmt.smlmt_rows(texts, min_df=2, max_df=10, min_per_class=2)
    assert sorted(rows) == sorted(
        [(f"the river [MASK] {i}", "bank") for i in range(3)]
        + [(f"a river [MASK] {i}", "flood") for i in range(2)] + [("[MASK] and river", "flood")])
    # 'river' (6 texts) is never chosen over the rarer 'bank' (3) / 'flood' (3)
    assert smlmt.smlmt_rows(texts, min_df=2, max_df=10, min_per_class=4) == []
