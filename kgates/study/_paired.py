"""Paired comparisons of cells run on the same configurations and weight seeds (a
paired search): Wilcoxon signed-rank, Hodges-Lehmann shift with a bootstrap interval,
Holm's correction, non-inferiority by a margin fixed before the run, and TOST."""

from __future__ import annotations

import numpy as np

from kgates.study._compare import BOOTSTRAP, _failed, _p, _worst, reference_cell, with_holm


def hodges_lehmann(differences) -> float:
    """The median of the Walsh averages (d_i + d_j) / 2, i <= j: the paired shift."""
    d = np.asarray(differences, np.float64)
    i, j = np.triu_indices(len(d))
    return float(np.median((d[i] + d[j]) / 2))


def paired_against_reference(
    trials: list[dict], direction: str, reference: str, cells: int, seed: int = 0
) -> list[dict]:
    """For a paired search (trial k: configuration k // `cells`), each cell against
    the reference on the configurations both finished (failures scored worst): the
    Wilcoxon signed-rank test, the Hodges-Lehmann shift with a bootstrap 95% interval
    (pairs resampled), Holm-corrected across cells."""
    from scipy import stats

    worst = _worst(trials, direction)
    by = {}
    for t in trials:
        if t["status"] != "RUNNING":
            score = worst if _failed(t) else t["score"]
            by.setdefault(t["cell"], {})[int(t["id"]) // cells] = score
    rng = np.random.default_rng(seed)
    rows = []
    for cell, scores in sorted(by.items()):
        shared = sorted(set(scores) & set(by.get(reference, {})))
        if cell == reference or len(shared) < 2:
            continue
        d = np.array([scores[c] - by[reference][c] for c in shared])
        p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else np.nan
        draws = [hodges_lehmann(rng.choice(d, len(d))) for _ in range(BOOTSTRAP)]
        low, high = np.quantile(draws, [0.025, 0.975])
        rows.append(
            {
                "cell": cell,
                "pairs": len(d),
                "shift": hodges_lehmann(d),
                "ci": (float(low), float(high)),
                "p": p,
                "differences": d.tolist(),
            }
        )
    return with_holm(rows)


def non_inferior(ci: tuple[float, float], direction: str, margin: float) -> bool:
    """Whether a shift (cell - reference) is no worse than `margin`: the bound of its
    95% interval on the worse side stays inside the margin (for "min", the upper
    bound below +margin; for "max", the lower bound above -margin)."""
    low, high = ci
    return bool(high < margin) if direction == "min" else bool(low > -margin)


def equivalence_p(differences, margin: float) -> float:
    """Two one-sided tests (TOST) that the mean paired difference lies within
    (-margin, +margin): the larger of the two one-sided t-test p-values."""
    from scipy import stats

    d = np.asarray(differences, np.float64)
    if len(d) < 2 or np.all(d == d[0]):
        return np.nan  # no spread: no test
    above = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    below = stats.ttest_1samp(d, margin, alternative="less").pvalue
    return float(max(above, below))


def paired_comparison(
    trials: list[dict], direction: str, scores: dict, cells, margin: float | None = None
) -> list[str]:
    """The report's section of a paired search: each cell against the reference on the
    configurations both ran; with a `margin`, which cells are no worse than it."""
    reference = reference_cell(scores, cells)
    rows = paired_against_reference(trials, direction, reference, len(cells))
    lines = [f"### Paired: the same configurations and weight seeds as {reference}", ""]
    if not rows:
        return lines + ["Needs at least 2 configurations that two cells both ran.", ""]
    lines += [
        f"Each cell's score minus {reference}'s on the same configuration (a Sobol "
        "sequence over the other hyperparameters, one weight seed per configuration): "
        "the Hodges-Lehmann shift (median of the Walsh averages) with a bootstrap 95% "
        "interval over configurations, and the Wilcoxon signed-rank test, Holm-corrected "
        "across cells (-: no difference to test).",
        "",
        "| cell | configurations | shift | 95% CI | p (Holm) |"
        + (
            f" within ±{margin:g} (TOST p) | no worse than {reference} by {margin:g}? |"
            if margin
            else ""
        ),  # fmt: skip
        "| --- | ---: | ---: | --- | ---: |" + (" ---: | --- |" if margin else ""),
    ]
    for row in rows:
        low, high = row["ci"]
        verdict = ""
        if margin:
            verdict = f" {_p(equivalence_p(row['differences'], margin))} |"
            verdict += " yes |" if non_inferior(row["ci"], direction, margin) else " not shown |"
        lines.append(
            f"| {row['cell']} | {row['pairs']} | {row['shift']:+.4g} | "
            f"[{low:+.4g}, {high:+.4g}] | {_p(row['p_holm'])} |" + verdict
        )
    if margin:
        lines += [
            "",
            f"No worse: the interval's bound on the worse side lies within the margin "
            f"{margin:g}, fixed with the search before it ran (a one-sided 2.5% test). "
            "Within: equivalence by two one-sided t-tests on the paired differences.",
        ]
    return lines + [""]
