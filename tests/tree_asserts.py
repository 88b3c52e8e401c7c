"""Tree assertions shared by the test modules (resume and restore checks)."""

import jax
import numpy as np


def assert_bits_equal(a, b) -> None:
    """Same tree structure and, leaf by leaf, the same dtype, shape and bytes."""
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
