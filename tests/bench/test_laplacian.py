"""benchmarks/laplacian.py: the Laplacian bound updates equal a numpy loop, and with
``lam=0`` they are the plain cosine argmax."""

import json

import numpy as np
from bench_scripts import load_script


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference(q, protos, scale, lam, knn, iters):
    logits = scale * q @ protos.T
    sim = q @ q.T
    np.fill_diagonal(sim, -np.inf)
    w = np.zeros_like(sim)
    for i, row in enumerate(sim):
        w[i, np.argsort(-row)[:knn]] = 1.0

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    y = softmax(logits)
    for _ in range(iters):
        y = softmax(logits + lam * w @ y)
    return y.argmax(-1)


def test_laplacian_assign_equals_a_numpy_loop():
    lap = load_script("laplacian")
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(4, 16)))
    q = _unit(centres[rng.integers(0, 4, 40)] + 0.9 * rng.normal(size=(40, 16)))
    protos = _unit(centres + 0.5 * rng.normal(size=(4, 16)))
    q, protos = q.astype(np.float32), protos.astype(np.float32)
    plain = (q @ protos.T).argmax(-1)
    np.testing.assert_array_equal(np.asarray(lap.laplacian_assign(q, protos, 10.0, 0.0, 5, 10)),
                                  plain)
    changed = 0
    for lam, knn in ((0.3, 3), (1.0, 5), (3.0, 8)):
        got = np.asarray(lap.laplacian_assign(q, protos, 10.0, lam, knn, 10))
        np.testing.assert_array_equal(got, _reference(q, protos, 10.0, lam, knn, 10))
        changed += int((got != plain).any())
    assert changed  # the neighbours' votes move some queries, so the comparison can fail


def test_report_renders_each_files_paired_gains(tmp_path, capsys):
    gain = {"cosine_centroid_names_trans": {"vs": "cosine_centroid_names", "mean": -0.0123,
                                            "ci95": 0.004, "episodes": 600}}
    rows = [{"data": "debian", "batch": "dirichlet", "shot": 5, "transductive_gains": gain,
             "results": {"cosine_centroid_names": {}}}]
    (tmp_path / "a.json").write_text(json.dumps({
        "command": "python benchmarks/laplacian.py --lam 0.3 --knn 3 -- table --out a",
        "rows": rows}))
    assert load_script("laplacian").main(["--report", str(tmp_path)]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line == ("| debian, centroid | --lam 0.3 --knn 3 | – | – | – | -1.2 ± 0.4 (600) "
                    "| – | – |")
