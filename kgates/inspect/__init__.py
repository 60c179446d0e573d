"""Tier 2: looking inside a model's recurrent layers: the model walk, traces, gradient
flow, gate statistics, and the TensorBoard callback that writes them. Public names
are exported flat from `kgates`."""
