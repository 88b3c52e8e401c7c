"""EpisodeSampler: shapes, determinism, resumption, disjointness, errors; gather."""

import json

import numpy as np
import pytest

from jaxmaml.data import EpisodeSampler, IndexEpisodes, TokenizedData, gather
from jaxmaml.data.splits import cap_rows
from jaxmaml.types import Examples

SEQ = 6


def make_data(counts):
    """Rows of class c are contiguous; input_ids[i] = i + 10*j so a row identifies itself."""
    labels = np.concatenate([np.full(n, c, np.int32) for c, n in enumerate(counts)])
    labels = labels[np.random.default_rng(123).permutation(len(labels))]  # interleave
    n = len(labels)
    ids = (np.arange(n, dtype=np.int32)[:, None] * 10 + np.arange(SEQ, dtype=np.int32))
    mask = np.ones((n, SEQ), np.int32)
    mask[:, -1] = np.arange(n) % 2
    names = tuple(f"c{i}" for i in range(len(counts)))
    return TokenizedData(ids, mask, labels, names)


@pytest.fixture(scope="module")
def data():
    return make_data([30, 25, 40, 21, 33, 50, 22, 28])


def sampler(data, **kw):
    args = dict(classes=None, way=4, shot=2, query=3, tasks=5, seed=7)
    args.update(kw)
    return EpisodeSampler(data, **args)


def assert_index_equal(a: IndexEpisodes, b: IndexEpisodes):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_shapes_and_dtypes(data):
    s = sampler(data)
    ep = s.episodes(0)
    assert ep.support.input_ids.shape == (5, 8, SEQ)
    assert ep.query.input_ids.shape == (5, 12, SEQ)
    assert ep.support.labels.shape == (5, 8) and ep.query.weights.shape == (5, 12)
    for ex in ep:
        assert ex.input_ids.dtype == np.int32 and ex.attention_mask.dtype == np.int32
        assert ex.labels.dtype == np.int32 and ex.weights.dtype == np.float32
        np.testing.assert_array_equal(ex.weights, 1.0)
    np.testing.assert_array_equal(ep.support.labels[0], [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(ep.query.labels[0], np.repeat(np.arange(4), 3))


def test_episodes_gather_the_indexed_rows(data):
    s = sampler(data)
    idx = s.indices(3)
    ep = s.episodes(3)
    np.testing.assert_array_equal(ep.support.input_ids, data.input_ids[idx.support_idx])
    np.testing.assert_array_equal(ep.query.attention_mask, data.attention_mask[idx.query_idx])
    np.testing.assert_array_equal(ep.support.labels, idx.support_labels)


def test_same_seed_and_step_identical_other_step_or_seed_differs(data):
    a, b = sampler(data), sampler(data)
    assert_index_equal(a.indices(11), b.indices(11))
    for x, y in zip(a.episodes(11), b.episodes(11)):
        for u, v in zip(x, y):
            if u is not None:
                np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.indices(11).support_idx, a.indices(12).support_idx)
    other = sampler(data, seed=8)
    assert not np.array_equal(a.indices(11).support_idx, other.indices(11).support_idx)
    # Tasks within one batch differ from each other too.
    sup = a.indices(0).support_idx
    assert len({tuple(r) for r in sup}) == len(sup)


def test_state_dict_round_trip_continues_identical_stream(data):
    a = sampler(data)
    stream = [a.episodes(step) for step in range(6)]
    b = sampler(data)
    b.step = 2  # what the training loop records once steps 0 and 1 are done
    state = json.loads(json.dumps(b.state_dict()))  # JSON-able
    assert state == {"seed": 7, "step": 2}
    c = sampler(data)
    c.load_state_dict(state)
    for want in stream[2:]:
        got = c.episodes(c.step)
        c.step += 1
        np.testing.assert_array_equal(got.support.input_ids, want.support.input_ids)
        np.testing.assert_array_equal(got.query.input_ids, want.query.input_ids)
    assert c.state_dict()["step"] == 6
    with pytest.raises(ValueError, match="seed 99 .* seed 7"):
        sampler(data).load_state_dict({"seed": 99, "step": 3})


def test_task_slice_matches_the_global_batch(data):
    s = sampler(data, tasks=6)
    full = s.indices(4)
    for part in (slice(0, 3), slice(3, 6), slice(2, 4)):
        assert_index_equal(s.indices(4, part), IndexEpisodes(*(x[part] for x in full)))
    ep = s.episodes(4, slice(3, 6))
    np.testing.assert_array_equal(ep.support.input_ids, s.episodes(4).support.input_ids[3:6])


def test_disjoint_support_query_distinct_classes_consistent_labels(data):
    s = sampler(data, way=5, shot=3, query=4, tasks=8)
    for step in range(20):
        idx = s.indices(step)
        for t in range(s.tasks):
            sup, qry = idx.support_idx[t], idx.query_idx[t]
            assert len(set(sup)) == len(sup) and len(set(qry)) == len(qry)
            assert not set(sup) & set(qry)
            assert len(set(idx.classes[t])) == s.way
            # The true class of every row is the class its task-local label stands for.
            cls = idx.classes[t]
            np.testing.assert_array_equal(data.labels[sup], cls[idx.support_labels[t]])
            np.testing.assert_array_equal(data.labels[qry], cls[idx.query_labels[t]])


def test_labels_are_a_fresh_permutation_and_classes_uniform(data):
    s = sampler(data, way=4, tasks=50)
    classes = np.concatenate([s.indices(step).classes for step in range(40)])  # [2000, 4]
    # Label 0 is not tied to any class: every class takes label 0 sometimes.
    assert set(classes[:, 0]) == set(range(8))
    # Each class is in a task with probability way / num_classes = 0.5.
    freq = np.array([(classes == c).any(1).mean() for c in range(8)])
    assert np.all(np.abs(freq - 0.5) < 5 * np.sqrt(0.25 / len(classes))), freq


def test_only_the_given_classes_names_or_indices(data):
    s = sampler(data, classes=["c1", "c4", "c6", "c7"], tasks=30)
    idx = s.indices(0)
    assert set(np.unique(idx.classes)) == {1, 4, 6, 7}
    assert set(np.unique(data.labels[idx.query_idx])) == {1, 4, 6, 7}
    by_index = sampler(data, classes=[1, 4, 6, 7], tasks=30)
    assert_index_equal(by_index.indices(0), idx)
    assert s.class_names == ("c1", "c4", "c6", "c7")
    assert set(data.labels[s.example_indices()]) == {1, 4, 6, 7}


def capped(data, max_per_class, seed=7):
    """``(data restricted to cap_rows, the kept rows)``: the one per-class cap."""
    keep = cap_rows(data.labels, len(data.class_names), max_per_class, seed)
    return TokenizedData(data.input_ids[keep], data.attention_mask[keep], data.labels[keep],
                         data.class_names), keep


def test_max_per_class_bounds_the_pools_deterministically(data):
    small, keep = capped(data, 10)
    s = sampler(small)
    assert all(len(p) == 10 for p in s.pools)
    rows = keep[s.example_indices()]
    assert len(rows) == 80
    np.testing.assert_array_equal(rows, capped(data, 10)[1][sampler(capped(data, 10)[0])
                                                              .example_indices()])
    for step in range(5):
        idx = s.indices(step)
        assert (np.isin(keep[idx.support_idx], rows).all()
                and np.isin(keep[idx.query_idx], rows).all())
    with pytest.raises(ValueError, match=r"'c0' has 4"):
        sampler(capped(data, 4)[0])
    assert len(cap_rows(data.labels, 8, None, 7)) == len(data.labels)  # None: every row


def test_error_fewer_classes_than_way(data):
    with pytest.raises(ValueError, match=r"way=5 needs at least 5 classes but only 3"):
        sampler(data, classes=["c0", "c1", "c2"], way=5)


def test_error_class_with_too_few_examples_names_it_and_count(data):
    with pytest.raises(ValueError, match=r"shot\+query=5\+20=25.*'c3' has 21.*'c6' has 22"):
        sampler(data, shot=5, query=20)


def test_error_bad_arguments(data):
    with pytest.raises(ValueError, match="unknown class 'nope'"):
        sampler(data, classes=["c0", "nope"])
    with pytest.raises(ValueError, match="duplicates"):
        sampler(data, classes=["c0", "c1", "c1", "c2"])
    with pytest.raises(ValueError, match="out of range"):
        sampler(data, classes=[0, 1, 2, 8])
    with pytest.raises(ValueError, match="shot must be an integer >= 1"):
        sampler(data, shot=0)
    with pytest.raises(ValueError, match="step must be >= 0"):
        sampler(data).indices(-1)


def test_gather_any_per_example_arrays(data):
    s = sampler(data)
    idx = s.indices(2)
    feats = np.random.default_rng(0).normal(size=(len(data.labels), SEQ, 3)).astype(np.float32)
    extra = {"bottom": feats} if "bottom" in Examples._fields else {}
    ep = gather({"attention_mask": data.attention_mask, **extra}, idx)
    assert ep.support.input_ids is None
    np.testing.assert_array_equal(ep.query.attention_mask, data.attention_mask[idx.query_idx])
    if extra:
        assert ep.support.bottom.shape == (5, 8, SEQ, 3)
        np.testing.assert_array_equal(ep.support.bottom, feats[idx.support_idx])
    with pytest.raises(ValueError, match="cannot gather \\['labels'\\]"):
        gather({"labels": data.labels}, idx)


# ---------------------------------------------------------------- imbalanced query batches
def _digest(index: IndexEpisodes) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in index:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def test_balanced_default_is_unchanged_bit_for_bit(data):
    # the digest of steps 0 and 3 as drawn before query_mix existed (same sampler arguments)
    a, b = sampler(data).indices(0), sampler(data).indices(3)
    h = __import__("hashlib").sha256()
    for index in (a, b):
        for x in index:
            h.update(np.ascontiguousarray(x).tobytes())
    assert h.hexdigest() == "f0e28bbf35ac491961cdebf1e74c88ec04d39e98b57b32fab559a3070133532f"
    assert_index_equal(sampler(data, query_mix="balanced").indices(3), b)


@pytest.mark.parametrize("query", [3, 2])  # 12 and 8 queries per task (a small batch)
def test_dirichlet_queries_fixed_total_varying_proportions_reproducible(data, query):
    s = sampler(data, query=query, tasks=40, query_mix="dirichlet")
    ix = s.indices(2)
    total = s.way * query
    assert ix.query_idx.shape == ix.query_labels.shape == (40, total)
    assert ix.support_idx.shape == (40, s.way * s.shot)
    counts = np.stack([np.bincount(lab, minlength=s.way) for lab in ix.query_labels])
    assert (counts.sum(1) == total).all()
    assert len({tuple(c) for c in counts}) > 10  # proportions vary from task to task
    assert (counts != query).any()               # and are not the balanced ones
    for t in range(40):  # rows grouped by label; each row of its class; none in the support
        assert (np.diff(ix.query_labels[t]) >= 0).all()
        assert (data.labels[ix.query_idx[t]] == ix.classes[t][ix.query_labels[t]]).all()
        assert not set(ix.query_idx[t]) & set(ix.support_idx[t])
        assert len(set(ix.query_idx[t])) == total
    # a pure function of (seed, step, task): the same again, a task slice agrees, other
    # seeds differ, and the support and classes are those of the balanced sampler
    assert _digest(ix) == _digest(sampler(data, query=query, tasks=40,
                                          query_mix="dirichlet").indices(2))
    assert_index_equal(s.indices(2, slice(5, 9)), IndexEpisodes(*(a[5:9] for a in ix)))
    assert _digest(ix) != _digest(sampler(data, query=query, tasks=40, seed=8,
                                          query_mix="dirichlet").indices(2))
    bal = sampler(data, query=query, tasks=40).indices(2)
    np.testing.assert_array_equal(ix.classes, bal.classes)


def test_dirichlet_proportions_follow_the_concentration(data):
    # alpha 2 over 4 classes: E[p_max] ~ 0.47; a huge alpha is near-balanced
    def spread(alpha):
        ix = sampler(data, tasks=200, query=5, query_mix="dirichlet",
                     query_alpha=alpha).indices(0)
        return np.mean([np.bincount(lab, minlength=4).max() / 20 for lab in ix.query_labels])
    assert 0.40 < spread(2.0) < 0.55
    assert spread(1e6) < 0.30


def test_dirichlet_counts_round_and_respect_room():
    from jaxmaml.data.episodes import dirichlet_counts

    np.testing.assert_array_equal(dirichlet_counts(np.array([0.5, 0.3, 0.2]), 10,
                                                   np.array([9, 9, 9])), [5, 3, 2])
    np.testing.assert_array_equal(dirichlet_counts(np.array([0.34, 0.33, 0.33]), 10,
                                                   np.array([9, 9, 9])), [4, 3, 3])
    # the first class can hold only 4: the excess goes to the classes furthest below share
    np.testing.assert_array_equal(dirichlet_counts(np.array([0.8, 0.15, 0.05]), 10,
                                                   np.array([4, 9, 9])), [4, 4, 2])
    with pytest.raises(ValueError, match="do not fit"):
        dirichlet_counts(np.array([0.5, 0.5]), 10, np.array([3, 3]))


def test_dirichlet_bad_arguments_are_explained(data):
    with pytest.raises(ValueError, match="query_mix must be one of"):
        sampler(data, query_mix="skewed")
    with pytest.raises(ValueError, match="query_alpha must be a positive"):
        sampler(data, query_mix="dirichlet", query_alpha=0.0)
