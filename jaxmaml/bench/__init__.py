"""The benchmark harness behind ``jaxmaml bench`` (never imported by ``import jaxmaml``).

- :mod:`jaxmaml.bench.point`: :class:`~jaxmaml.bench.point.BenchPoint` (one measured
  setting), the model and episodes it runs on, the timing loop and the JAX measurement;
- :mod:`jaxmaml.bench.grid`: grids of points (flags or a YAML file), the runner (one
  process per point), ratios, and the ``jaxmaml bench`` flags;
- :mod:`jaxmaml.bench.flops`: trip-count-aware FLOP counts and the hand formula;
- :mod:`jaxmaml.bench.report`: JSON lines, a markdown table and plots;
- :mod:`jaxmaml.bench.torch_peer`: the PyTorch peer, an optional module (needs torch).
"""
