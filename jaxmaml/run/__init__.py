"""The run layer: configs, data for a run, state and checkpoints, the training loop,
evaluation of run directories, export and loading. It composes the library (``models/``,
``meta/``, ``data/``, ``parallel/``, ``tree``), which never imports it."""
