"""Tier 3: studies with Keras Tuner: tasks, the hypermodel, searches, the search
directory, the report and the demo. Public names are exported flat from `kgates`."""
