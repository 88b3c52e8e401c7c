"""benchmarks/finetune_table.py: ``--wise-alpha`` evaluates the run's model exactly as
``jaxmaml eval RUN --set train.wise_alpha=A`` loads it (and records it in the rows), a
non-positive value is refused, and an ``--out`` with a dot keeps its name."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from bench_scripts import load_script

from jaxmaml.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ft():
    return load_script("finetune_table")


def test_wise_alpha_loads_the_model_that_eval_set_loads(ft, tmp_path, capsys):
    from jaxmaml.run.load import restore_meta_params, run_config

    run = tmp_path / "run"
    assert main(["train", str(ROOT / "configs/tiny.yaml"), "--out", str(run), "--no-progress",
                 "--set", "train.steps=3", "--set", "train.eval_every=0"]) == 0
    setup = ft.parse_setup(f"A={run}:data=x")
    cfg, _, _, (_, half) = ft._load(setup, "latest", wise_alpha=0.5)
    assert cfg.train.wise_alpha == 0.5
    _, full = ft._load(setup, "latest")[3]
    _, ref = restore_meta_params(run_config(run, ["train.wise_alpha=0.5"]), run, "latest")
    differ = 0
    for h, r, f in zip(*(jax.tree.leaves(p["encoder"]) for p in (half, ref, full))):
        np.testing.assert_array_equal(np.asarray(h), np.asarray(r))
        differ += int(not np.array_equal(np.asarray(h), np.asarray(f)))
    assert differ  # alpha 0.5 is not the run's own 1.0, so the check can fail

    out = tmp_path / "t-0.5"
    assert ft.main(["table", "--setup", f"A={run}:data={ROOT / 'tests/data/tiny_topics.csv'}",
                    "--way", "2", "--shot", "1", "--query", "2", "--episodes", "3",
                    "--batches", "balanced", "--methods", "meta_learned_centroid",
                    "--wise-alpha", "0.5", "--out", str(out)]) == 0
    rows = json.loads((tmp_path / "t-0.5.json").read_text())["rows"]
    assert [r["wise_alpha"] for r in rows] == [0.5] and (tmp_path / "t-0.5.md").exists()

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        ft.main(["table", "--setup", f"A={run}:data=x", "--wise-alpha", "0",
                 "--out", str(tmp_path / "t")])
    assert e.value.code == 2 and "--wise-alpha" in capsys.readouterr().err


def test_wise_alpha_report_pairs_each_cell_as_a_plain_computation(tmp_path):
    rep = load_script("wise_alpha_report")
    rng = np.random.default_rng(0)
    base = {c: rng.uniform(0.4, 0.9, 20) for c in rep.CELLS}
    shift = {c: (-0.05 if c == ("H", 5) else 0.01) for c in rep.CELLS}  # pyhowto 5: below
    for kind, pairs in (("", rep.EXPORT), ("names-", rep.NAMES)):
        for setup, shots in (("D", "D"), ("L", "VH")):
            rows = []
            for c in [c for c in rep.CELLS if c[0] in shots]:
                pe = {}
                for m, vs in pairs:
                    pe[vs] = base[c].tolist()
                    pe[m] = (base[c] + shift[c] + rng.normal(0, 0.01, 20)).tolist()
                rows.append({"setup": c[0], "shot": c[1], "per_episode": pe})
            (tmp_path / f"{setup}-{kind}0.1.json").write_text(json.dumps({"rows": rows}))
    row = json.loads((tmp_path / "L-names-0.1.json").read_text())["rows"][-1]
    d = 100 * (np.array(row["per_episode"]["meta_learned_centroid_names_trans"])
               - np.array(row["per_episode"]["cosine_centroid_names_trans"]))
    mean, ci = rep.paired(row, *rep.NAMES[0])
    assert mean == pytest.approx(d.mean()) and ci == pytest.approx(1.96 * d.std(ddof=1) / 20**.5)
    text = rep.report(tmp_path)
    assert f"**{rep.fmt(mean, ci).strip('*')}**" in text and text.count("**−") == 3


def test_sweep_scores_the_methods_asked_as_table_does(ft, tmp_path, capsys):
    """``sweep --methods finetune_names_trans`` scores the original encoder's recommended
    setting at each point: per episode what ``table`` gives with the same options on the
    same episodes; a meta-learned method is refused (a sweep loads no run)."""
    data = ROOT / "tests/data/tiny_topics.csv"
    common = ["--way", "2", "--shot", "1", "--query", "6", "--episodes", "3",
              "--finetune-episodes", "3", "--methods", "finetune_names_trans"]
    assert ft.main(["sweep", "--setup", f"A={ROOT / 'configs/tiny.yaml'}:data={data}",
                    "--point", "steps=4,lr=0.05,head_lr=0.3",
                    "--point", "steps=4,lr=0.3,head_lr=0.3", *common,
                    "--out", str(tmp_path / "s")]) == 0
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert [r["options"]["lr"] for r in rows] == [0.05, 0.3]
    # the two points score differently on these episodes, so the match below can fail
    assert rows[0]["per_episode"] != rows[1]["per_episode"]
    assert all(r["finetune_names_trans"]["episodes"] == 3 and "finetune" not in r
               for r in rows)

    run = tmp_path / "run"
    assert main(["train", str(ROOT / "configs/tiny.yaml"), "--out", str(run), "--no-progress",
                 "--set", "train.steps=1", "--set", "train.eval_every=0"]) == 0
    assert ft.main(["table", "--setup", f"A={run}:data={data}", "--checkpoint", "latest",
                    "--batches", "balanced", "--finetune", "steps=4", "lr=0.3", "head_lr=0.3",
                    *common,
                    "--out", str(tmp_path / "t")]) == 0
    table = json.loads((tmp_path / "t.json").read_text())["rows"][0]["per_episode"]
    assert rows[1]["per_episode"] == {"finetune_names_trans": table["finetune_names_trans"]}

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        ft.main(["sweep", "--setup", f"A={ROOT / 'configs/tiny.yaml'}:data={data}",
                 "--methods", "meta_learned_finetune", "--out", str(tmp_path / "m")])
    assert e.value.code == 2 and "original encoder only" in capsys.readouterr().err


def test_a_wrapper_records_its_own_command_line(ft, tmp_path):
    """``wrapped_main``: the results say the wrapper's whole command (quoted for a shell),
    and the arguments after its ``--`` are this script's."""
    data = ROOT / "tests/data/tiny_topics.csv"
    rest = ["--", "sweep", "--setup", f"A={ROOT / 'configs/tiny.yaml'}:data={data}",
            "--way", "2", "--shot", "1", "--query", "2", "--episodes", "2",
            "--out", str(tmp_path / "w")]
    assert ft.wrapped_main("name_template.py", ["--template", "About {}.", *rest], rest) == 0
    command = json.loads((tmp_path / "w.json").read_text())["command"]
    assert command.startswith("python benchmarks/name_template.py --template 'About {}.' -- "
                              "sweep --setup A=")
