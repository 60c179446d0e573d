"""Keras Tuner oracles that compare cells fairly: each cell in turn, and every cell on
the same configurations (for paired comparisons)."""

from __future__ import annotations

import json
import os
import warnings

import keras_tuner

from kgates.study._directory import atomic_write


class AtomicSaves:
    """Writes `oracle.json` and every `trial.json` through a temporary file and a
    rename (Keras Tuner writes them in place): a kill mid-write leaves the last whole
    file, and a worker reading the search never sees one half-written."""

    def save(self):
        state = json.dumps(self.get_state())
        atomic_write(self._get_oracle_fname(), state, self._project_dir)

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        atomic_write(path, json.dumps(trial.get_state()), self._project_dir)


class BayesianOracle(AtomicSaves, keras_tuner.oracles.BayesianOptimizationOracle):
    """Keras Tuner's Bayesian optimization oracle with whole-file saves."""


class HyperbandOracle(AtomicSaves, keras_tuner.oracles.HyperbandOracle):
    """Keras Tuner's Hyperband oracle with whole-file saves."""


class CellsInTurnOracle(AtomicSaves, keras_tuner.oracles.RandomSearchOracle):
    """Random search in which trial k runs the k-th cell in turn (NP, GRU, CIFG, NFG,
    NP, ...) and draws the rest at random: a small search compares every cell it
    names, equally often."""

    def _random_values(self):
        cell = next((hp for hp in self.hyperparameters.space if hp.name == "cell"), None)
        if cell is None or not hasattr(cell, "values"):
            return super()._random_values()
        turn = cell.values[len(self.trials) % len(cell.values)]  # earlier trials, resumed too
        cell.random_sample = lambda seed=None: turn
        try:
            return super()._random_values()
        finally:
            del cell.random_sample


def _fixed(value):
    return lambda seed=None: value


class PairedOracle(CellsInTurnOracle):
    """Every cell on the same configurations: trial k runs cell k mod C on configuration
    k // C. Configuration j is point j of a scrambled Sobol sequence (seeded by the
    search) mapped onto the other hyperparameters, and its trials share one weight
    seed, so cells can be compared pair by pair (`kgates report`)."""

    def _duplicate(self, values) -> bool:
        # Configuration j of a cell is a trial of its own, with the weight seed of j,
        # even where the values repeat (every option fixed but the cell): comparing cells
        # over seeds alone is a paired search too.
        return False

    def _cells(self) -> int:
        cell = next((hp for hp in self.hyperparameters.space if hp.name == "cell"), None)
        return len(cell.values) if cell is not None and hasattr(cell, "values") else 1

    def _random_values(self):
        from scipy.stats import qmc

        others = [hp for hp in self.hyperparameters.space if hp.name != "cell"]
        config = len(self.trials) // self._cells()
        if not others:
            return super()._random_values()
        with warnings.catch_warnings():  # balance needs 2^m points; any prefix is fine
            warnings.simplefilter("ignore", UserWarning)
            point = qmc.Sobol(len(others), scramble=True, seed=self.seed).random(config + 1)
        for hp, u in zip(others, point[config]):
            hp.random_sample = _fixed(hp.prob_to_value(float(u)))
        try:
            return super()._random_values()
        finally:
            for hp in others:
                del hp.random_sample
