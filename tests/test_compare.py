"""The report's comparison of cells: failures kept, Welch against the reference,
Holm's correction, expected best of k; each against numbers worked by hand."""

import numpy as np
import pytest
from scipy import stats

from kgates.study._compare import (
    against_reference,
    best_share,
    expected_best,
    holm,
    scores_by_cell,
)
from kgates.study._paired import (
    equivalence_p,
    hodges_lehmann,
    non_inferior,
    paired_against_reference,
    paired_comparison,
)


def _trial(cell, score, status="COMPLETED"):
    return {"cell": cell, "score": score, "status": status, "values": {"cell": cell}}


def test_failed_and_diverged_trials_score_the_worst_result():
    trials = [
        _trial("V", 0.2),
        _trial("V", 0.5),
        _trial("NFG", float("nan")),  # diverged
        _trial("NFG", None, "FAILED"),
        _trial("NFG", 0.3),
        _trial("NFG", None, "RUNNING"),  # not finished: left out
    ]
    scores, failures = scores_by_cell(trials, "min")
    assert scores["V"].tolist() == [0.2, 0.5]
    assert scores["NFG"].tolist() == [0.5, 0.5, 0.3]  # the worst finite score is 0.5
    assert failures == {"V": 0.0, "NFG": pytest.approx(2 / 3)}
    scores, _ = scores_by_cell(trials, "max")  # accuracy: the worst is the smallest
    assert scores["NFG"].tolist() == [0.2, 0.2, 0.3]


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_expected_best_by_hand():
    # two draws from {1, 2}: both 2 with probability 1/4, else the best is 1
    assert expected_best([1.0, 2.0], 2, "min") == pytest.approx(0.25 * 2 + 0.75 * 1)
    assert expected_best([1.0, 2.0], 2, "max") == pytest.approx(0.25 * 1 + 0.75 * 2)
    assert expected_best([3.0, 1.0, 2.0], 1, "min") == pytest.approx(2.0)  # k = 1: the mean
    rng = np.random.default_rng(0)
    values = rng.random(7)
    draws = rng.choice(values, (200000, 3)).min(axis=1).mean()  # Monte Carlo
    assert expected_best(values, 3, "min") == pytest.approx(draws, abs=3e-3)


def test_welch_against_the_reference_by_formula():
    rng = np.random.default_rng(1)
    scores = {
        "V": rng.normal(1.0, 0.1, 20),
        "NP": rng.normal(1.05, 0.2, 30),
        "GRU": rng.normal(1.3, 0.1, 10),
    }
    rows = {r["cell"]: r for r in against_reference(scores, "min", "V")}
    assert set(rows) == {"NP", "GRU"}
    a, b = scores["GRU"], scores["V"]
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert rows["GRU"]["all"]["p"] == pytest.approx(2 * stats.t.sf(abs(t), df))
    assert rows["GRU"]["all"]["difference"] == pytest.approx(a.mean() - b.mean())
    ps = [rows["NP"]["all"]["p"], rows["GRU"]["all"]["p"]]
    assert [rows["NP"]["all"]["p_holm"], rows["GRU"]["all"]["p_holm"]] == holm(ps)
    # the best 10% (at least 2): the 2 lowest of 20 for V, the 3 lowest of 30 for NP
    assert best_share(scores["NP"], "min").tolist() == sorted(scores["NP"])[:3]
    top = rows["NP"]["top"]["difference"]
    assert top == pytest.approx(
        np.mean(sorted(scores["NP"])[:3]) - np.mean(sorted(scores["V"])[:2])
    )


def test_the_report_section_tables_every_cell_against_v():
    from kgates.study._report import comparison

    trials = [_trial("NP", 0.1 * k) for k in range(1, 5)] + [_trial("V", 0.2), _trial("V", 0.4)]
    trials += [_trial("NFG", 0.9), _trial("NFG", None, "FAILED")]
    scores, failures = scores_by_cell(trials, "min")
    text = "\n".join(comparison(scores, failures, "min", ("NP", "V", "NFG")))
    assert "## Cells against V" in text and "| V (reference) | 2 | 0% | 0.3 |" in text
    # the failed trial is scored 0.9, the worst result of the search
    assert "| NFG | 2 | 50% | 0.9 | +0.6 |" in text
    assert "| NP | 4 | 0% | 0.25 | -0.05 |" in text


def test_no_spread_no_p_value():
    scores = {"V": np.array([0.5, 0.5]), "NP": np.array([0.4, 0.4]), "GRU": np.array([0.1, 0.3])}
    rows = {r["cell"]: r for r in against_reference(scores, "min", "V")}
    assert np.isnan(rows["NP"]["all"]["p"]) and np.isnan(rows["NP"]["all"]["p_holm"])
    assert rows["GRU"]["all"]["p_holm"] == pytest.approx(rows["GRU"]["all"]["p"])  # one test


def test_hodges_lehmann_by_hand():
    # Walsh averages of (1, 2, 4): 1, 1.5, 2.5, 2, 3, 4 -> median (2 + 2.5) / 2
    assert hodges_lehmann([1.0, 2.0, 4.0]) == pytest.approx(2.25)


def test_paired_comparison_pairs_trials_by_configuration():
    # a paired search of two cells: trial k runs configuration k // 2
    rng = np.random.default_rng(0)
    base = rng.random(12)
    trials = []
    for config, value in enumerate(base):
        trials.append({**_trial("V", value), "id": str(2 * config)})
        trials.append({**_trial("NP", value - 0.1 + 0.01 * config), "id": str(2 * config + 1)})
    trials[5]["status"], trials[5]["score"] = "FAILED", None  # NP, configuration 2
    (row,) = paired_against_reference(trials, "min", "V", cells=2)
    d = [0.01 * config - 0.1 for config in range(12)]  # NP minus V, by construction
    worst = max(t["score"] for t in trials if t["score"] is not None)  # V's or NP's
    d[2] = worst - base[2]  # the failed trial is scored the worst result
    assert row["pairs"] == 12
    assert row["shift"] == pytest.approx(hodges_lehmann(d))
    assert row["p"] == pytest.approx(stats.wilcoxon(d).pvalue)
    assert row["ci"][0] <= row["shift"] <= row["ci"][1]


def test_no_worse_by_a_margin_by_hand():
    # min: worse is higher; the upper bound must stay below +margin
    assert non_inferior((-0.02, 0.04), "min", 0.05)
    assert not non_inferior((-0.02, 0.06), "min", 0.05)
    # max: worse is lower; the lower bound must stay above -margin
    assert non_inferior((-0.04, 0.02), "max", 0.05)
    assert not non_inferior((-0.06, 0.5), "max", 0.05)
    # in the report: a cell a hair worse than V on every configuration is no worse
    # by a margin 10 times the hair, and not shown to be by a tenth of it
    trials = []
    for config, value in enumerate(np.linspace(0.3, 0.6, 10)):
        trials.append({**_trial("V", value), "id": str(2 * config)})
        trials.append({**_trial("NP", value + 0.01), "id": str(2 * config + 1)})
    scores = {"V": None, "NP": None}
    wide = paired_comparison(trials, "min", scores, ["V", "NP"], margin=0.1)
    narrow = paired_comparison(trials, "min", scores, ["V", "NP"], margin=0.001)
    assert any(line.startswith("| NP ") and line.endswith(" yes |") for line in wide)
    assert any(line.startswith("| NP ") and line.endswith(" not shown |") for line in narrow)
    assert "no worse than V by 0.1?" in "\n".join(wide)


def test_where_the_best_learning_rate_fell_by_hand():
    from kgates.study._report import rate_edges

    def trial(id_, cell, score, rate):
        return {"id": id_, "cell": cell, "score": score, "values": {"learning_rate": rate}}

    done = [trial("0", "V", 0.5, 1e-3), trial("1", "V", 0.9, 1e-4),  # V's best: 1e-3
            trial("2", "NP", 0.4, 1.1e-4), trial("3", "NP", 0.6, 1e-3)]  # fmt: skip
    lines = rate_edges(done, "min", [1e-4, 1e-2])
    rows = {
        line.split(" | ")[0][2:]: line
        for line in lines
        if line.startswith("| ") and "|" in line[2:]
    }
    assert "| 0 | 0.001 | 0.50 |  |" in rows["V"]  # the middle of the log range
    position = np.log(1.1) / np.log(100)  # 0.02: at the low end
    assert f"| 2 | 0.00011 | {position:.2f} | near an end" in rows["NP"]
    assert rate_edges(done, "min", [1e-3]) == []  # a fixed rate: nothing to say


def test_equivalence_by_two_one_sided_tests():
    d = np.array([0.01, -0.02, 0.03, 0.0, -0.01, 0.02])
    lower = stats.ttest_1samp(d, -0.1, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, 0.1, alternative="less").pvalue
    assert equivalence_p(d, 0.1) == pytest.approx(max(lower, upper))
    # by the formula: t = (mean - bound) / (sd / sqrt(n)), df = n - 1
    se = d.std(ddof=1) / np.sqrt(len(d))
    t_upper = (d.mean() - 0.1) / se
    assert upper == pytest.approx(stats.t.cdf(t_upper, len(d) - 1))
    assert equivalence_p(d, 0.1) < 0.01 < equivalence_p(d, 0.02)  # a margin too tight
    assert np.isnan(equivalence_p([0.01, 0.01], 0.1))  # no spread: no test


def test_the_reference_is_a_label_the_search_has():
    from kgates.study._compare import reference_cell

    scores = {"GRU(reset_after=False)": [0.1, 0.2]}  # --cells GRU --reset-after false
    assert reference_cell(scores, ("GRU",)) == "GRU(reset_after=False)"
    assert reference_cell({"NP": [0.1], "GRU": [0.2]}, ("GRU", "NP")) == "GRU"
