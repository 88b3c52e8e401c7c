"""Sharded meta-training over a device mesh, on one host or many (JAX's own runtime).

The mesh is an argument, never a global. Three modules, re-exported here
(``from jaxmaml import parallel; parallel.make_mesh(...)``):

* :mod:`jaxmaml.parallel.mesh`: the mesh and the ``(regex, PartitionSpec)`` sharding rules
  of the state (:func:`tree_shardings`);
* :mod:`jaxmaml.parallel.placement`: episodes on the mesh (task axis over ``'data'``),
  per-process task slices and multi-host initialization;
* :mod:`jaxmaml.parallel.jitting`: the state created into its shards and the sharded,
  donated meta-step.
"""

from jaxmaml.parallel.jitting import create_state, jit_sharded_meta_step
from jaxmaml.parallel.mesh import (axis_size, DATA, fsdp_spec, get_rules, leaf_spec, make_mesh,
                                   MODEL, Rule, RULE_PRESETS, SpecFn, TENSOR_RULES, tree_shardings)
from jaxmaml.parallel.placement import (check_meta_batch, episodes_sharding,
                                        initialize_distributed, is_main_process,
                                        process_task_slice, put_episodes, replicated)

__all__ = [
    "DATA", "MODEL", "RULE_PRESETS", "TENSOR_RULES", "Rule", "SpecFn", "axis_size",
    "check_meta_batch", "create_state", "episodes_sharding", "fsdp_spec", "get_rules",
    "initialize_distributed", "is_main_process", "jit_sharded_meta_step", "leaf_spec",
    "make_mesh", "process_task_slice", "put_episodes", "replicated", "tree_shardings",
]
