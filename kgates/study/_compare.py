"""Comparing cells in a search, as Greff et al. (2015) did, with failures kept.

- A failed or diverged trial is scored as the worst result of the search (not
  dropped: dropping favours cells that diverge often), and failure rates are
  reported.
- Each cell against a reference cell (V, the vanilla LSTM, when the search has
  it): Welch's t-test over all its trials and over its best 10%, with Holm's
  correction across the cells compared.
- In a paired search (every cell on the same configurations and weight seeds),
  the Wilcoxon signed-rank test over shared configurations, with the
  Hodges-Lehmann shift and a bootstrap interval.
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
BOOTSTRAP = 2000


def _failed(trial: dict) -> bool:
    score = trial["score"]
    return trial["status"] != "COMPLETED" or score is None or not np.isfinite(score)


def _worst(trials: list[dict], direction: str) -> float:
    finite = [t["score"] for t in trials if not _failed(t)]
    return (max(finite) if direction == "min" else min(finite)) if finite else np.nan


def scores_by_cell(trials: list[dict], direction: str) -> tuple[dict, dict]:
    """`({cell: scores}, {cell: failure rate})`, every finished trial counted: a failed
    or non-finite one gets the worst finite score of the search."""
    worst = _worst(trials, direction)
    scores, failures = {}, {}
    for cell in sorted({t["cell"] for t in trials}):
        mine = [t for t in trials if t["cell"] == cell and t["status"] != "RUNNING"]
        failed = [_failed(t) for t in mine]
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


def with_holm(rows: list[dict], key: str = "p") -> list[dict]:
    """Sets each row's `p_holm`: Holm across the rows with a finite `key` p-value,
    NaN for the rest. Returns the rows."""
    tested = [r for r in rows if r[key] is not None and np.isfinite(r[key])]
    for row in rows:
        row["p_holm"] = np.nan
    for row, adjusted in zip(tested, holm([r[key] for r in tested])):
        row["p_holm"] = adjusted
    return rows


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

    done = [t for t in trials if not _failed(t)]
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


# The report's sections (kgates report)
def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _p(value: float) -> str:
    return f"{value:.3g}" if np.isfinite(value) else "-"


def reference_cell(scores: dict, cells) -> str:
    """V when the search has it, else its first cell with scores (a label the
    search's cells do not name, e.g. `GRU(reset_after=False)`, after them)."""
    if REFERENCE in scores:
        return REFERENCE
    return next((c for c in cells if c in scores), next(iter(scores)))


def comparison(scores: dict, failures: dict, direction: str, cells) -> list[str]:
    """The report's section comparing each cell with the reference cell."""
    reference = reference_cell(scores, cells)
    rows = against_reference(scores, direction, reference)
    lines = [f"## Cells against {reference}", ""]
    if not rows:
        return lines + [f"Needs at least 2 finished trials of {reference} and of another cell.", ""]
    lines += [
        f"Every finished trial counts: a failed or diverged one is scored as the worst "
        f"result of the search. Welch's t-test of each cell's scores against {reference}'s, "
        "over all trials and over the best 10% of each (at least 2; Greff et al. 2015); "
        "p-values Holm-corrected across the cells (-: no spread to test). Difference: "
        "cell mean minus "
        f"{reference}'s mean ({'negative' if direction == 'min' else 'positive'} is better).",
        "",
        "| cell | trials | failure rate | mean | difference | p (Holm) | best 10%: difference "
        "| p (Holm) | expected best of 5 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ref = scores[reference]
    lines.append(
        f"| {reference} (reference) | {len(ref)} | {failures[reference]:.0%} | "
        f"{fmt(float(ref.mean()))} | - | - | - | - | "
        f"{fmt(expected_best(ref, 5, direction))} |"
    )
    for row in rows:
        values = scores[row["cell"]]
        a, t = row["all"], row["top"]
        lines.append(
            f"| {row['cell']} | {row['n']} | {failures[row['cell']]:.0%} | "
            f"{fmt(float(values.mean()))} | {a['difference']:+.4g} | {_p(a['p_holm'])} | "
            f"{t['difference']:+.4g} | {_p(t['p_holm'])} | "
            f"{fmt(expected_best(values, 5, direction))} |"
        )
    lines += [
        "",
        "Expected best of k (Dodge et al. 2019): the best score k random trials of the cell "
        "would find on average, from its trials so far.",
        "",
        "![expected best of k](report/expected_best.png)",
        "",
    ]
    return lines


def held_out(trials: list[dict], direction: str) -> list[str]:
    """The report's section on the task's test split: per cell, the test score of
    the trial that validation chose, and the median over its completed trials."""
    tested = [t for t in trials if t.get("test") is not None and not _failed(t)]
    if not tested:
        return []
    lines = [
        "## Held-out test",
        "",
        "Validation chose; the test split, never used to choose, gives the numbers "
        "(at the epoch of each trial's best validation score).",
        "",
        "| cell | trials | chosen trial | its validation | its test | median test |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    pick = min if direction == "min" else max
    for cell in sorted({t["cell"] for t in tested}):
        mine = [t for t in tested if t["cell"] == cell]
        chosen = pick(mine, key=lambda t: t["score"])
        median = float(np.median([t["test"] for t in mine]))
        lines.append(
            f"| {cell} | {len(mine)} | {chosen['id']} | {fmt(chosen['score'])} | "
            f"{fmt(chosen['test'])} | {fmt(median)} |"
        )
    return [*lines, ""]
