"""Benchmarks, each a module run as ``python -m benchmarks.<name>``.

- speed and memory of layers and kernels: :mod:`.layers` (with :mod:`.layer_baselines`,
  :mod:`.layer_floors`), :mod:`.kernels`, :mod:`.native_profile`, :mod:`.cpu_heap`,
  :mod:`.xla_cpu_fusions`; shared timing and tables: :mod:`.timing`, :mod:`.tables`;
- whole processes (start-up, the demo cold and warm): :mod:`.process`;
- the fair KAN-vs-MLP comparison: :mod:`.compare`;
- models trained on tasks: :mod:`.models`;
- formulas from data: :mod:`.formulas`.
"""
