"""Comparing cells in a search, as Greff et al. (2015) did, with failures kept.

- A failed or diverged trial is scored as the worst result of the search (not
  dropped: dropping favours cells that diverge often), and failure rates are
  reported.
- Each cell against a reference cell (V, the vanilla LSTM, when the search has
  it): Welch's t-test over all its trials and over its best 10%, with Holm's
  correction across the cells compared.
- The expected best score of k trials (Dodge et al. 2019): what a search of k
  random configurations of that cell would find, on average.
- Hyperparameter importance by fANOVA (Hutter et al. 2014, as Greff et al.),
  with optuna's evaluator.
"""

from __future__ import annotations

import warnings

import numpy as np

REFERENCE = "V"  # Greff et al.'s vanilla LSTM
TOP = 0.10  # Greff et al.'s "top 10%"


def scores_by_cell(trials: list[dict], direction: str) -> tuple[dict, dict]:
    """`({cell: scores}, {cell: failure rate})`, every finished trial counted: a failed
    or non-finite one gets the worst finite score of the search."""
    finite = [t["score"] for t in trials if t["score"] is not None and np.isfinite(t["score"])]
    worst = (max(finite) if direction == "min" else min(finite)) if finite else np.nan
    scores, failures = {}, {}
    for cell in sorted({t["cell"] for t in trials}):
        mine = [t for t in trials if t["cell"] == cell and t["status"] != "RUNNING"]
        failed = [
            t["status"] != "COMPLETED" or t["score"] is None or not np.isfinite(t["score"])
            for t in mine
        ]
        scores[cell] = np.asarray(
            [worst if bad else t["score"] for t, bad in zip(mine, failed)], np.float64
        )
        failures[cell] = float(np.mean(failed)) if mine else 0.0
    return scores, failures


def best_share(scores: np.ndarray, direction: str, share: float = TOP) -> np.ndarray:
    """The best `share` of the scores (at least 2)."""
    ordered = np.sort(scores) if direction == "min" else np.sort(scores)[::-1]
    return ordered[: max(2, int(np.ceil(share * len(scores))))]


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given."""
    p = np.asarray(pvalues, np.float64)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def against_reference(scores: dict, direction: str, reference: str) -> list[dict]:
    """Each cell's scores against the reference's by Welch's t-test, over all trials
    and over the best 10% of each, Holm-corrected across the cells."""
    from scipy import stats

    rows = []
    for cell, values in scores.items():
        if cell == reference or len(values) < 2 or len(scores[reference]) < 2:
            continue
        row = {"cell": cell, "n": len(values), "n_reference": len(scores[reference])}
        for key, a, b in (
            ("all", values, scores[reference]),
            (
                "top",
                best_share(values, direction),
                best_share(scores[reference], direction),
            ),
        ):
            p = np.nan  # undefined when neither varies (e.g. both best 10% equal)
            if a.var(ddof=1) + b.var(ddof=1) > 0:
                with warnings.catch_warnings():  # one constant group: still a valid test
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
            row[key] = {"difference": float(a.mean() - b.mean()), "p": p}
        rows.append(row)
    for key in ("all", "top"):
        tested = [r for r in rows if np.isfinite(r[key]["p"])]
        for row in rows:
            row[key]["p_holm"] = np.nan
        for row, adjusted in zip(tested, holm([r[key]["p"] for r in tested])):
            row[key]["p_holm"] = adjusted
    return rows


def expected_best(scores, k: int, direction: str) -> float:
    """Expected best of `k` scores drawn with replacement from `scores` (Dodge et al.
    2019): sum_i s_(i) [(i/n)^k - ((i-1)/n)^k], the s_(i) sorted worst to best."""
    s = np.sort(np.asarray(scores, np.float64))
    if direction == "min":
        s = s[::-1]
    n = len(s)
    i = np.arange(1, n + 1)
    return float(np.sum(s * ((i / n) ** k - ((i - 1) / n) ** k)))


def fanova_importance(trials: list[dict], names: list[str], seed: int = 0) -> dict | None:
    """fANOVA importance (optuna's evaluator) of the hyperparameters every completed
    trial has; None when fewer than two vary."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.importance import FanovaImportanceEvaluator

    done = [t for t in trials if t["status"] == "COMPLETED" and np.isfinite(t["score"] or np.nan)]
    shared = [n for n in names if all(n in t["values"] for t in done)]
    distributions = {}
    for name in shared:
        raw = [t["values"][name] for t in done]
        if all(isinstance(v, float) for v in raw):
            low, high = min(raw), max(raw)
            if low < high:
                log = name == "learning_rate" and low > 0
                distributions[name] = FloatDistribution(low, high, log=log)
        elif len({repr(v) for v in raw}) > 1:
            distributions[name] = CategoricalDistribution(sorted(set(raw), key=repr))
    if len(distributions) < 2 or len(done) < 2:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    for t in done:
        params = {n: t["values"][n] for n in distributions}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=t["score"])
        )
    found = optuna.importance.get_param_importances(
        study, evaluator=FanovaImportanceEvaluator(seed=seed)
    )
    return {name: float(weight) for name, weight in found.items()}
