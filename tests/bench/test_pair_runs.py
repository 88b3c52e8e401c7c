"""benchmarks/pair_runs.py: two runs' table rows pair episode by episode (against a plain
computation), and files whose original-encoder rows differ (other episodes) are refused."""

import json

import numpy as np
import pytest
from bench_scripts import load_script


@pytest.fixture(scope="module")
def pr():
    return load_script("pair_runs")


def _rows(rng, original, shift):
    """One setup, one shot: the original encoder's rows and two meta-learned ones."""
    noisy = np.clip(original + shift + rng.normal(0, .02, 30), 0, 1)
    per_episode = {"cosine_centroid": original, "finetune_names_trans": original[::-1],
                   "meta_learned_centroid": noisy,
                   "meta_learned_finetune_names_trans": original[::-1] + shift}
    return [{"setup": "D", "data": "debian", "batch": "balanced", "shot": 5,
             "per_episode": {m: [float(x) for x in v] for m, v in per_episode.items()}}]


def test_pairs_match_a_plain_computation_and_other_episodes_are_refused(pr, tmp_path):
    rng = np.random.default_rng(0)
    original = rng.uniform(0.4, 0.9, 30)
    a, b = _rows(rng, original, 0.03), _rows(rng, original, 0.01)
    pairs = {p["method"]: p for p in pr.pair_rows(a, b)}
    assert set(pairs) == {"meta_learned_centroid", "meta_learned_finetune_names_trans"}
    for m, orig in (("meta_learned_centroid", "cosine_centroid"),
                    ("meta_learned_finetune_names_trans", "finetune_names_trans")):
        x, y = (np.asarray(r[0]["per_episode"][m]) for r in (a, b))
        o = np.asarray(a[0]["per_episode"][orig])
        d = x - y
        assert pairs[m]["a_minus_b"]["mean"] == pytest.approx(d.mean())
        assert pairs[m]["a_minus_b"]["ci95"] == pytest.approx(1.96 * d.std(ddof=1) / np.sqrt(30))
        assert pairs[m]["a_gain"]["mean"] == pytest.approx((x - o).mean())
        assert pairs[m]["b_gain"]["mean"] == pytest.approx((y - o).mean())
    files = []
    for name, rows in (("a", a), ("b", b)):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps({"rows": rows}))
    assert pr.main([str(f) for f in files] + ["--md", str(tmp_path / "t.md")]) == 0
    assert "`meta_learned_centroid` | 30 |" in (tmp_path / "t.md").read_text()
    other = _rows(rng, rng.uniform(0.4, 0.9, 30), 0.01)  # other episodes
    with pytest.raises(SystemExit, match="not the same episodes"):
        pr.pair_rows(a, other)
