"""A staged study of arms (cells, initialisations...) over seeds, shared by the
studies in this folder (`forget_bias.py`, `lstm_vs_gru.py`).

A study is a module that names its `ARMS`, the `COMPARISONS` (arm, reference) to
make, the learning rates `LRS`, `PILOT_SEEDS`, `SEEDS`, its `TASKS` and `SMOKE`
tasks (name: (kgates task, sizes, epochs, "solved" below this validation loss, or
None)), optionally `MARGINS` (task: equivalence margin, fixed before the run), and
`build(arm, task, seed, lr, smoke)`, a compiled model whose recurrent layer is
named "rnn". Seed s gives every arm the same data (fresh per seed) and batch order.

Stages, each resumable (one JSON file per finished run in `--out`; the same command
goes on) and shareable between processes (`--worker K/N`):

1. `pilot`: every arm at every learning rate on the pilot seeds; an arm's rate is
   the one with the lowest median validation score (a diverged run counts as the
   worst). While an arm's best rate is an end of its grid, the next `pilot` grows
   that arm's grid past it, one step of the 1-3-10 ladder at a time (up to `EXTEND`
   steps each way), so run `pilot` until it has nothing left to do; the report says
   when a rate still fell at an end.
2. `main`: every arm at its rate on the seeds; refused until the pilot is whole.
   `main --lr R` (and `report --lr R`): every arm at the one rate R instead, with
   or without a pilot, a check that a difference is not the pilot's choice of
   rates; runs at R already made are reused (files are named by rate).
3. `report`: per arm the median test score with a bootstrap 95% interval, diverged
   runs (scored the worst) and runs solved; each comparison paired by seed
   (Wilcoxon signed-rank, Hodges-Lehmann shift with a bootstrap 95% interval, Holm
   across comparisons; TOST within the task's margin when it has one); time to solve
   (Kaplan-Meier median, log-rank); and whether early gradient reach predicts the
   outcome (each run's model rebuilt as it started: the reach of ||dL/dc_t|| and
   ||dL/dh_t||, `kgates.reach` at 1% of the peak, on 64 validation sequences,
   against its test score by Spearman's rank correlation).

The score of a run is its test loss at the epoch of its best validation loss: the
validation split selects, the test split (drawn apart from both) reports.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import time

import keras
import numpy as np

import kgates
from kgates.study._compare import BOOTSTRAP, holm, with_holm
from kgates.study._paired import equivalence_p, paired_against_reference

BATCH = 64
EXTEND = 2  # steps the pilot's grid may grow past either end, per arm
AGAIN = "run `pilot` until it has nothing left to do (it grows a grid whose best rate is an end)"


def task_data(study, name: str, seed: int, smoke: bool):
    """The task for `seed` (every study task has a test split apart from the rest)."""
    kind, sizes, _, _ = (study.SMOKE if smoke else study.TASKS)[name]
    return kgates.make_task(kind, seed=seed, **sizes)


class _Curves(keras.callbacks.Callback):
    """Validation and test loss after every epoch; stops a run that diverged."""

    def __init__(self, task):
        super().__init__()
        self.task, self.val, self.test, self.train = task, [], [], []

    def on_epoch_end(self, epoch, logs=None):
        self.train.append(float(logs["loss"]))
        if not np.isfinite(self.train[-1]):
            self.model.stop_training = True
            return
        for data, out in ((("x_val", "y_val"), self.val), (("x_test", "y_test"), self.test)):
            x, y = (getattr(self.task, name) for name in data)
            out.append(float(self.model.evaluate(x, y, batch_size=256, verbose=0)))


def one_run(study, name: str, arm: str, lr: float, seed: int, smoke: bool) -> dict:
    _, _, epochs, solved = (study.SMOKE if smoke else study.TASKS)[name]
    task = task_data(study, name, seed, smoke)
    model = study.build(arm, task, seed, lr, smoke)
    curves = _Curves(task)
    start = time.time()
    model.fit(
        task.x_train, task.y_train, batch_size=BATCH, epochs=epochs, verbose=0,
        shuffle=True, callbacks=[curves],
    )  # fmt: skip
    diverged = not all(np.isfinite(curves.train)) or not curves.val
    best = int(np.argmin(curves.val)) if not diverged else None
    return {
        "task": name,
        "arm": arm,
        "lr": lr,
        "seed": seed,
        "epochs": epochs,
        "smoke": smoke,
        "parameters": model.count_params(),
        "train_loss": curves.train,
        "val_loss": curves.val,
        "test_loss": curves.test,
        "diverged": diverged,
        "best_epoch": best,
        "val": None if diverged else curves.val[best],
        "test": None if diverged else curves.test[best],
        "solved_epoch": _first_below(curves.val, solved),
        "seconds": time.time() - start,
        "backend": keras.backend.backend(),
    }


def _first_below(curve, threshold):
    if threshold is None:
        return None
    return next((k + 1 for k, v in enumerate(curve) if v < threshold), None)


def _key(stage, name, arm, lr, seed) -> str:
    safe = arm.replace(", ", "_").replace("=", "").replace("~", "_")
    return f"{stage}-{name}-{safe}-lr{lr:g}-s{seed}"


def _save(out: str, key: str, record: dict) -> None:
    os.makedirs(out, exist_ok=True)
    temporary = os.path.join(out, f".{key}.tmp")
    with open(temporary, "w") as f:
        json.dump(record, f)
    os.replace(temporary, os.path.join(out, f"{key}.json"))


def load(out: str, stage: str, name: str) -> list[dict]:
    runs = []
    for path in sorted(glob.glob(os.path.join(out, f"{stage}-{name}-*.json"))):
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def _next_rate(lr: float, up: bool) -> float:
    """The rate one step of the 1-3-10 ladder above (or below) `lr`."""
    exponent = math.floor(math.log10(lr))
    ladder = [float(f"{m}e{e}") for e in range(exponent - 2, exponent + 3) for m in (1, 3)]
    return min(r for r in ladder if r > 1.5 * lr) if up else max(r for r in ladder if r < lr / 1.5)


def _pilot_medians(runs: list[dict], arm: str, grid: list, seeds: int) -> dict | None:
    """Median validation score per rate of `grid` (a diverged run counts as the
    worst of the pilot), or None while a rate lacks some of its runs."""
    worst = max((r["val"] for r in runs if r["val"] is not None), default=np.inf)
    medians = {}
    for lr in grid:
        scores = [worst if r["val"] is None else r["val"] for r in runs
                  if r["arm"] == arm and r["lr"] == lr]  # fmt: skip
        if len(scores) < seeds:
            return None
        medians[lr] = float(np.median(scores))
    return medians


def _grown(study, runs: list[dict], arm: str, smoke: bool) -> tuple[list[float], dict | None]:
    """An arm's pilot grid (see `pilot_grid`) and its medians (`_pilot_medians`)."""
    grid = list(study.LRS[:2] if smoke else study.LRS)
    seeds = 1 if smoke else len(study.PILOT_SEEDS)
    grown = {True: 0, False: 0}  # steps up, steps down
    while True:
        medians = _pilot_medians(runs, arm, grid, seeds)
        best = medians and min(medians, key=medians.get)
        up = best == grid[-1]
        if smoke or best not in (grid[0], grid[-1]) or grown[up] == EXTEND:
            return grid, medians
        grown[up] += 1
        grid.insert(len(grid) if up else 0, _next_rate(best, up))


def pilot_grid(study, runs: list[dict], arm: str, smoke: bool) -> list[float]:
    """An arm's pilot rates: `LRS`, grown one ladder step past an end while the best
    rate is that end (at most `EXTEND` steps each way; none with --smoke)."""
    return _grown(study, runs, arm, smoke)[0]


def chosen_rates(study, out: str, name: str) -> dict:
    """Each arm's learning rate: the lowest median validation score in the pilot
    (a diverged run counts as the worst), over the arm's whole grid."""
    runs = load(out, "pilot", name)
    smoke = any(_smoke(r) for r in runs)
    rates = {}
    for arm in study.ARMS:
        grid, medians = _grown(study, runs, arm, smoke)
        if medians is None:
            raise SystemExit(f"the pilot of {name} has not finished {arm}'s grid {grid}: {AGAIN}")
        rates[arm] = min(medians, key=medians.get)
    return rates


def _smoke(run: dict) -> bool:
    return run.get("smoke", run["epochs"] <= 2)  # runs made before "smoke" was recorded


def rates_of(study, out: str, name: str, lr: float | None) -> dict:
    """Each arm's rate in the main stage: the pilot's, or `lr` for every arm."""
    return {arm: lr for arm in study.ARMS} if lr else chosen_rates(study, out, name)


def plan(study, stage: str, name: str, out: str, smoke: bool, lr=None) -> list[tuple]:
    if stage == "pilot":  # --smoke: one seed, two rates
        seeds, runs = study.PILOT_SEEDS[: 1 if smoke else None], load(out, "pilot", name)
        return [(arm, lr, seed) for arm in study.ARMS
                for lr in pilot_grid(study, runs, arm, smoke) for seed in seeds]  # fmt: skip
    pilot = [] if lr else plan(study, "pilot", name, out, smoke)  # --lr needs no pilot
    missing = [
        key
        for key in (_key("pilot", name, *run) for run in pilot)
        if not os.path.exists(os.path.join(out, f"{key}.json"))
    ]
    if missing:
        raise SystemExit(
            f"the pilot of {name} lacks {len(missing)} runs ({missing[0]}, ...): {AGAIN}"
        )
    rates = rates_of(study, out, name, lr)
    seeds = study.SEEDS[: 2 if smoke else None]
    return [(arm, rates[arm], seed) for seed in seeds for arm in study.ARMS]


def run_stage(
    study, stage: str, name: str, out: str, worker: tuple[int, int], smoke: bool, lr=None
):
    todo = plan(study, stage, name, out, smoke, lr)
    index, workers = worker
    for k, (arm, lr, seed) in enumerate(todo):
        key = _key(stage, name, arm, lr, seed)
        if k % workers != index or os.path.exists(os.path.join(out, f"{key}.json")):
            continue
        record = one_run(study, name, arm, lr, seed, smoke)
        _save(out, key, record)
        shown = "diverged" if record["diverged"] else f"test {record['test']:.4g}"
        print(f"[{k + 1}/{len(todo)}] {key}: {shown} ({record['seconds']:.0f} s)", flush=True)


def _bootstrap_median(values, rng) -> tuple[float, float]:
    draws = [np.median(rng.choice(values, len(values))) for _ in range(BOOTSTRAP)]
    return tuple(float(q) for q in np.quantile(draws, [0.025, 0.975]))


def report(study, out: str, name: str, lr: float | None = None) -> dict:
    rates = rates_of(study, out, name, lr)
    runs = [r for r in load(out, "main", name) if r["lr"] == rates.get(r["arm"])]
    worst = max((r["test"] for r in runs if r["test"] is not None), default=np.nan)
    rng, pilot = np.random.default_rng(0), load(out, "pilot", name)
    arms = {}
    for arm in study.ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        scores = np.array([worst if r["diverged"] else r["test"] for r in mine])
        grid = pilot_grid(study, pilot, arm, _smoke(mine[0]))
        arms[arm] = {
            "lr": rates[arm],
            "pilot_rates": grid,
            "lr_at_edge": not lr and rates[arm] in (grid[0], grid[-1]),
            "runs": len(mine),
            "parameters": mine[0].get("parameters"),
            "diverged": sum(r["diverged"] for r in mine),
            "median_test": float(np.median(scores)),
            "median_ci": _bootstrap_median(scores, rng),
            "solved": sum(r["solved_epoch"] is not None for r in mine),
        }
    return {
        "task": name,
        "lr": lr,  # one rate for every arm, or None: each arm's pilot rate
        "spec": study.TASKS.get(name),
        "arms": arms,
        "comparisons": comparisons(study, runs, name),
        "time_to_solve": time_to_solve(study, runs),
        "reach_vs_outcome": reach_vs_outcome(study, out, runs, worst),
    }


def comparisons(study, runs: list[dict], name: str) -> list[dict]:
    """Each (arm, reference) of the study paired by seed, Holm across them."""
    arms = study.ARMS
    trials = [
        {"id": str(r["seed"] * len(arms) + arms.index(r["arm"])), "cell": r["arm"],
         "status": "FAILED" if r["diverged"] else "COMPLETED", "score": r["test"]}
        for r in runs
    ]  # fmt: skip
    margin = getattr(study, "MARGINS", {}).get(name)
    rows = []
    for arm, reference in study.COMPARISONS:
        pair = [t for t in trials if t["cell"] in (arm, reference)]
        for row in paired_against_reference(pair, "min", reference, len(arms)):
            row["reference"] = reference
            differences = row.pop("differences")
            if margin is not None:
                row["margin"], row["tost_p"] = margin, equivalence_p(differences, margin)
            rows.append(row)
    return with_holm(rows)


def initial_reach(study, out: str, runs: list[dict]) -> dict:
    """Gradient reach at initialisation of each run's model (cached in `out`)."""
    path = os.path.join(out, "reach.json")
    cached = json.load(open(path)) if os.path.exists(path) else {}
    for r in runs:
        key = _key("main", r["task"], r["arm"], r["lr"], r["seed"])
        if key in cached:
            continue
        smoke = _smoke(r)
        task = task_data(study, r["task"], r["seed"], smoke)
        model = study.build(r["arm"], task, r["seed"], r["lr"], smoke)
        norms = kgates.GradientFlow(model)(task.x_val[:64], task.y_val[:64])["rnn"]
        cached[key] = {s: kgates.reach(norms[s], 0.01) if s in norms else None for s in "ch"}
        _save(out, "reach", cached)
    return cached


def reach_vs_outcome(study, out: str, runs: list[dict], worst: float) -> dict:
    """Spearman's rank correlation of initial reach with the test score (a diverged
    run scored the worst), over all runs and within each arm."""
    from scipy import stats

    reach = initial_reach(study, out, runs)
    rows = {}
    groups = {"all runs": runs, **{a: [r for r in runs if r["arm"] == a] for a in study.ARMS}}
    for state in ("c", "h"):
        for group, mine in groups.items():
            keys = [_key("main", r["task"], r["arm"], r["lr"], r["seed"]) for r in mine]
            pairs = [(reach[k][state], worst if r["diverged"] else r["test"])
                     for k, r in zip(keys, mine) if reach[k][state] is not None]  # fmt: skip
            if not pairs:
                continue
            a, b = (list(v) for v in zip(*pairs))
            row = {"runs": len(pairs), "reach": [min(a), max(a)], "rho": None, "p": None}
            if len(pairs) >= 3 and len(set(a)) > 1 and len(set(b)) > 1:
                rho, p = stats.spearmanr(a, b)  # no spread in one of them: nothing to say
                row["rho"], row["p"] = float(rho), float(p)
            rows[f"{state}, {group}"] = row
    return rows


def _censored(runs: list[dict]):
    from scipy import stats

    solved = [r["solved_epoch"] for r in runs if r["solved_epoch"] is not None]
    budget = [r["epochs"] for r in runs if r["solved_epoch"] is None]
    return stats.CensoredData(uncensored=solved, right=budget)


def time_to_solve(study, runs: list[dict]) -> list[dict]:
    """Epochs until the validation loss first fell below the task's "solved" line,
    a run that never did censored at its budget: per arm the Kaplan-Meier median;
    each comparison by the log-rank test (Holm across them)."""
    from scipy import stats

    if not runs or study.TASKS[runs[0]["task"]][3] is None:  # no "solved" line
        return []
    by = {arm: [r for r in runs if r["arm"] == arm] for arm in study.ARMS}
    rows = []
    for arm, mine in by.items():
        if not mine:
            continue
        curve = stats.ecdf(_censored(mine)).sf
        below = np.flatnonzero(curve.probabilities <= 0.5)
        median = float(curve.quantiles[below[0]]) if len(below) else None
        rows.append({"arm": arm, "median_epochs": median, "p": None, "reference": None})
    for arm, reference in study.COMPARISONS:
        row = next((r for r in rows if r["arm"] == arm), None)
        events = any(r["solved_epoch"] is not None for r in by[arm] + by[reference])
        if row is not None and by[reference] and events:  # nobody solved: nothing to test
            row["reference"] = reference
            row["p"] = float(stats.logrank(_censored(by[arm]), _censored(by[reference])).pvalue)
    tested = [r for r in rows if r["p"] is not None]
    for row, adjusted in zip(tested, holm([r["p"] for r in tested])):
        row["p_holm"] = adjusted
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"| arm | lr ({'fixed' if result.get('lr') else 'pilot'}) | parameters | runs | "
        "diverged | solved | median test loss [95% CI] |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm, a in result["arms"].items():
        edge = " (edge)" if a["lr_at_edge"] else ""
        low, high = a["median_ci"]
        lines.append(
            f"| {arm} | {a['lr']:g}{edge} | {a['parameters']} | {a['runs']} | {a['diverged']} | "
            f"{a['solved']} | {a['median_test']:.4g} [{low:.4g}, {high:.4g}] |"
        )
    lines += ["", "| arm - reference | pairs | HL shift [95% CI] | Wilcoxon p | Holm p | TOST p |"]
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in result["comparisons"]:
        low, high = r["ci"]
        tost = f"{r['tost_p']:.3g} (±{r['margin']:g})" if "tost_p" in r else "-"
        lines.append(
            f"| {r['cell']} - {r['reference']} | {r['pairs']} | {r['shift']:+.4g} "
            f"[{low:+.4g}, {high:+.4g}] | {r['p']:.3g} | {r['p_holm']:.3g} | {tost} |"
        )
    lines += ["", "| initial reach of | runs | reach (min-max) | Spearman rho with test loss | p |"]
    lines.append("| --- | ---: | --- | ---: | ---: |")
    for name, r in result["reach_vs_outcome"].items():
        low, high = r["reach"]
        rho = "- | -" if r["rho"] is None else f"{r['rho']:+.2f} | {r['p']:.3g}"
        lines.append(f"| {name} | {r['runs']} | {low}-{high} | {rho} |")
    if result["time_to_solve"]:
        lines += ["", "| arm | median epochs to solve (Kaplan-Meier) | log-rank p | Holm p |"]
        lines.append("| --- | ---: | ---: | ---: |")
        for r in result["time_to_solve"]:
            median = "not reached" if r["median_epochs"] is None else f"{r['median_epochs']:g}"
            p = (
                "- | -"
                if r["p"] is None
                else f"{r['p']:.3g} vs {r['reference']} | {r['p_holm']:.3g}"
            )
            lines.append(f"| {r['arm']} | {median} | {p} |")
    return "\n".join(lines)


def _worker(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        index, count = int(index), int(count or 1)
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected K/N with 0 <= K < N, got {text!r}")
    return index, count


def main(study, argv=None) -> dict | None:
    """The study's command line: `STAGE --task NAME [--out DIR] [--worker K/N]`."""
    parser = argparse.ArgumentParser(description=study.__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("pilot", "main", "report"))
    parser.add_argument("--task", choices=tuple(study.TASKS), default=next(iter(study.TASKS)))
    parser.add_argument("--out", default=study.OUT, help=f"run files (default: {study.OUT})")
    parser.add_argument("--worker", type=_worker, default=(0, 1), help="K/N: this share")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--json", help="with report: write the analysis here")
    parser.add_argument(
        "--lr", type=float, help="main and report: every arm at this rate, not the pilot's"
    )
    args = parser.parse_args(argv)
    if args.lr is not None and (args.stage == "pilot" or not args.lr > 0):
        parser.error("--lr must be a positive rate, for the main and report stages")
    if args.smoke and args.task not in study.SMOKE:
        parser.error(f"--smoke has sizes for {', '.join(study.SMOKE)} only")
    if args.stage != "report":
        run_stage(study, args.stage, args.task, args.out, args.worker, args.smoke, args.lr)
        return None
    result = report(study, args.out, args.task, args.lr)
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result
