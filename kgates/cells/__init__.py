"""Tier 1: the gated cells and layers, their variants, and the exact recomputation of
gates. Public names are exported flat from `kgates`."""
