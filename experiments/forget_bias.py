"""Does a forget-gate bias of 1 help? b_f = 0, 1, 2, chrono and chrono with b_i = 0,
many seeds, each arm at its own learning rate.

Arms differ only in the initial forget (and input) gate biases of one `kgates.LSTM`
layer: b_f = 0, 1 (Keras's `unit_forget_bias`), 2; chrono (Tallec & Ollivier 2018:
b_f = log U(1, T - 1), b_i = -b_f); chrono with b_i = 0. Seed s gives every arm the
same training data (fresh per seed), the same other initial weights and batch order.

Stages (each resumable: one JSON file per finished run in `--out`; run the same
command again and it goes on; `--worker K/N` shares a stage between processes):

1. `pilot`: every arm at each learning rate of `LRS` on `PILOT_SEEDS` seeds; the
   arm's rate is the one with the lowest median validation score (the report says
   whether it fell at the edge of the grid).
2. `main`: every arm at its rate on `SEEDS` seeds.
3. `report`: per arm the median test score (bootstrap 95% interval), failures
   (diverged runs, scored as the worst run of the stage) and runs solved; each arm
   against b_f = 1 paired by seed: Wilcoxon signed-rank, Hodges-Lehmann shift with a
   bootstrap 95% interval, Holm across the four; time to solve (Kaplan-Meier,
   log-rank). And whether early gradient reach predicts the outcome: each main run's
   model is rebuilt as it started, and the reach of ||dL/dc_t|| and ||dL/dh_t||
   (`kgates.reach`, 1% of the peak) on 64 validation sequences is set against its
   test score by Spearman's rank correlation, over all runs and within each arm.

The score is the test loss at the epoch of best validation loss (validation selects,
the test split is never used for it); the test split is drawn apart from both.

    python experiments/forget_bias.py pilot --task adding-100 --worker 0/2 &
    python experiments/forget_bias.py pilot --task adding-100 --worker 1/2; wait
    python experiments/forget_bias.py main --task adding-100 --worker 0/2 &
    python experiments/forget_bias.py main --task adding-100 --worker 1/2; wait
    python experiments/forget_bias.py report --task adding-100 \
        --json experiments/results/forget_bias_adding-100.json
    python experiments/forget_bias.py pilot --task adding-100 --smoke --out /tmp/fb  # tiny
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

import keras
import numpy as np

import kgates
from kgates.study._compare import BOOTSTRAP
from kgates.study._data import adding_problem
from kgates.study._paired import paired_against_reference

ARMS = ("b_f=0", "b_f=1", "b_f=2", "chrono", "chrono, b_i=0")
REFERENCE = "b_f=1"
LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
PILOT_SEEDS = (100, 101)
SEEDS = tuple(range(12))
TASKS = {  # name: (kgates task, sizes, epochs, "solved" below this test loss)
    "adding-100": ("adding", {"samples": 4000, "length": 100}, 25, 0.01),
    "music": ("music", {"samples": 2000, "length": 64}, 20, None),
}
SMOKE = {"adding-100": ("adding", {"samples": 32, "length": 8}, 2, 0.01)}
UNITS, SMOKE_UNITS, BATCH = 64, 4, 64


def task_data(name: str, seed: int, smoke: bool):
    """The task for `seed`, with a test split drawn apart from training and validation."""
    kind, sizes, _, _ = (SMOKE if smoke else TASKS)[name]
    task = kgates.make_task(kind, seed=seed, **sizes)
    if task.x_test is None:  # adding: validation is seed + 1; the test is far away
        n = len(task.x_val)
        task.x_test, task.y_test = adding_problem(n, sizes["length"], 1_000_003 + seed)
    return task


def _set_gate_bias(layer, gate: str, values) -> None:
    cell = layer.cell
    gates = list(getattr(cell, "weighted_gates", "ifgo"))
    bias = keras.ops.convert_to_numpy(cell.bias).copy()
    k = gates.index(gate)
    bias[k * cell.units : (k + 1) * cell.units] = values
    cell.bias.assign(bias)


def build(arm: str, task, seed: int, units: int, lr: float) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(task.x_train.shape[1:])
    layer = kgates.LSTM(
        units, unit_forget_bias=False, return_sequences=task.sequence_output, name="rnn"
    )
    model = keras.Model(inputs, task.head(layer(inputs)))
    if arm.startswith("chrono"):
        kgates.set_chrono_bias(layer, task.timescale, seed)
        if arm == "chrono, b_i=0":
            _set_gate_bias(layer, "i", 0.0)
    else:
        _set_gate_bias(layer, "f", float(arm.removeprefix("b_f=")))
    model.compile(keras.optimizers.Adam(lr, clipnorm=1.0), loss=task.loss())
    return model


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


def one_run(name: str, arm: str, lr: float, seed: int, smoke: bool) -> dict:
    _, _, epochs, solved = (SMOKE if smoke else TASKS)[name]
    task = task_data(name, seed, smoke)
    model = build(arm, task, seed, SMOKE_UNITS if smoke else UNITS, lr)
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
    safe = arm.replace(", ", "_").replace("=", "")
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


def chosen_rates(out: str, name: str) -> dict:
    """Each arm's learning rate: the lowest median validation score in the pilot
    (a diverged run counts as the worst)."""
    runs = load(out, "pilot", name)
    worst = max((r["val"] for r in runs if r["val"] is not None), default=np.inf)
    rates = {}
    for arm in ARMS:
        medians = {}
        for lr in LRS:
            scores = [worst if r["val"] is None else r["val"] for r in runs
                      if r["arm"] == arm and r["lr"] == lr]  # fmt: skip
            if scores:
                medians[lr] = float(np.median(scores))
        if medians:
            rates[arm] = min(medians, key=medians.get)
    return rates


def plan(stage: str, name: str, out: str, smoke: bool) -> list[tuple]:
    if stage == "pilot":
        seeds = PILOT_SEEDS[: 1 if smoke else None]
        return [(arm, lr, seed) for arm in ARMS for lr in LRS for seed in seeds]
    missing = [key for key in (_key("pilot", name, *run) for run in plan("pilot", name, out, smoke))
               if not os.path.exists(os.path.join(out, f"{key}.json"))]  # fmt: skip
    if missing:
        raise SystemExit(
            f"forget_bias: the pilot of {name} lacks {len(missing)} runs ({missing[0]}, ...); "
            "run it first."
        )
    rates = chosen_rates(out, name)
    return [(arm, rates[arm], seed) for seed in SEEDS[: 2 if smoke else None] for arm in ARMS]


def run_stage(stage: str, name: str, out: str, worker: tuple[int, int], smoke: bool) -> None:
    todo = plan(stage, name, out, smoke)
    index, workers = worker
    for k, (arm, lr, seed) in enumerate(todo):
        key = _key(stage, name, arm, lr, seed)
        if k % workers != index or os.path.exists(os.path.join(out, f"{key}.json")):
            continue
        record = one_run(name, arm, lr, seed, smoke)
        _save(out, key, record)
        shown = "diverged" if record["diverged"] else f"test {record['test']:.4g}"
        print(f"[{k + 1}/{len(todo)}] {key}: {shown} ({record['seconds']:.0f} s)", flush=True)


def _bootstrap_median(values, rng) -> tuple[float, float]:
    draws = [np.median(rng.choice(values, len(values))) for _ in range(BOOTSTRAP)]
    return tuple(float(q) for q in np.quantile(draws, [0.025, 0.975]))


def report(out: str, name: str) -> dict:
    runs = load(out, "main", name)
    rates = chosen_rates(out, name)
    worst = max((r["test"] for r in runs if r["test"] is not None), default=np.nan)
    rng = np.random.default_rng(0)
    arms = {}
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        scores = np.array([worst if r["diverged"] else r["test"] for r in mine])
        solved = [r["solved_epoch"] for r in mine if r["solved_epoch"] is not None]
        arms[arm] = {
            "lr": rates[arm],
            "lr_at_edge": rates[arm] in (LRS[0], LRS[-1]),
            "runs": len(mine),
            "diverged": sum(r["diverged"] for r in mine),
            "median_test": float(np.median(scores)),
            "median_ci": _bootstrap_median(scores, rng),
            "solved": len(solved),
            "median_epochs_to_solve": float(np.median(solved)) if solved else None,
        }
    trials = [
        {"id": str(r["seed"] * len(ARMS) + ARMS.index(r["arm"])), "cell": r["arm"],
         "status": "FAILED" if r["diverged"] else "COMPLETED", "score": r["test"]}
        for r in runs
    ]  # fmt: skip
    paired = paired_against_reference(trials, "min", REFERENCE, len(ARMS))
    return {
        "reach_vs_outcome": reach_vs_outcome(out, runs, worst),
        "task": name,
        "spec": TASKS.get(name),
        "arms": arms,
        "against_b_f=1": paired,
        "time_to_solve": time_to_solve(runs),
    }


def initial_reach(out: str, runs: list[dict]) -> dict:
    """Gradient reach at initialisation of each run's model (cached in `out`)."""
    path = os.path.join(out, "reach.json")
    cached = json.load(open(path)) if os.path.exists(path) else {}
    for r in runs:
        key = _key("main", r["task"], r["arm"], r["lr"], r["seed"])
        if key in cached:
            continue
        task = task_data(r["task"], r["seed"], smoke=r["epochs"] <= 2)
        units = SMOKE_UNITS if r["epochs"] <= 2 else UNITS
        model = build(r["arm"], task, r["seed"], units, r["lr"])
        x, y = task.x_val[:64], task.y_val[:64]
        norms = kgates.GradientFlow(model)(x, y)["rnn"]
        cached[key] = {name: kgates.reach(norms[name], 0.01) for name in ("c", "h")}
        _save(out, "reach", cached)
    return cached


def reach_vs_outcome(out: str, runs: list[dict], worst: float) -> dict:
    """Spearman's rank correlation of initial reach with the test score (a diverged
    run scored the worst), over all runs and within each arm."""
    from scipy import stats

    reach = initial_reach(out, runs)
    rows = {}
    for state in ("c", "h"):
        groups = {"all runs": runs, **{arm: [r for r in runs if r["arm"] == arm] for arm in ARMS}}
        for group, mine in groups.items():
            keys = [_key("main", r["task"], r["arm"], r["lr"], r["seed"]) for r in mine]
            a = [reach[k][state] for k in keys]
            b = [worst if r["diverged"] else r["test"] for r in mine]
            row = {"runs": len(mine), "reach": [min(a, default=0), max(a, default=0)]}
            row["rho"] = row["p"] = None  # no spread in one of them: nothing to correlate
            if len(mine) >= 3 and len(set(a)) > 1 and len(set(b)) > 1:
                rho, p = stats.spearmanr(a, b)
                row["rho"], row["p"] = float(rho), float(p)
            rows[f"{state}, {group}"] = row
    return rows


def _censored(runs: list[dict]):
    from scipy import stats

    solved = [r["solved_epoch"] for r in runs if r["solved_epoch"] is not None]
    budget = [r["epochs"] for r in runs if r["solved_epoch"] is None]
    return stats.CensoredData(uncensored=solved, right=budget)


def time_to_solve(runs: list[dict]) -> list[dict]:
    """Epochs until the validation loss first fell below the task's "solved" line,
    a run that never did censored at its budget: per arm the Kaplan-Meier median,
    and each arm against b_f = 1 by the log-rank test (Holm across the four)."""
    from scipy import stats

    from kgates.study._compare import holm

    if not runs or TASKS[runs[0]["task"]][3] is None:  # the task has no "solved" line
        return []
    rows = []
    reference = [r for r in runs if r["arm"] == REFERENCE]
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        curve = stats.ecdf(_censored(mine)).sf
        below = np.flatnonzero(curve.probabilities <= 0.5)
        row = {
            "arm": arm,
            "median_epochs": float(curve.quantiles[below[0]]) if len(below) else None,
            "p": None,
        }
        events = any(r["solved_epoch"] is not None for r in mine + reference)
        if arm != REFERENCE and reference and events:  # no run solved: nothing to test
            row["p"] = float(stats.logrank(_censored(mine), _censored(reference)).pvalue)
        rows.append(row)
    tested = [r for r in rows if r["p"] is not None]
    for row, adjusted in zip(tested, holm([r["p"] for r in tested])):
        row["p_holm"] = adjusted
    return rows


def markdown(result: dict) -> str:
    lines = [
        "| arm | lr (pilot) | runs | diverged | solved | median test loss [95% CI] |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm, a in result["arms"].items():
        edge = " (edge)" if a["lr_at_edge"] else ""
        low, high = a["median_ci"]
        lines.append(
            f"| {arm} | {a['lr']:g}{edge} | {a['runs']} | {a['diverged']} | {a['solved']} | "
            f"{a['median_test']:.4g} [{low:.4g}, {high:.4g}] |"
        )
    lines += ["", "| arm - b_f=1 | pairs | HL shift [95% CI] | Wilcoxon p | Holm p |"]
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    for r in result["against_b_f=1"]:
        low, high = r["ci"]
        lines.append(
            f"| {r['cell']} | {r['pairs']} | {r['shift']:+.4g} [{low:+.4g}, {high:+.4g}] | "
            f"{r['p']:.3g} | {r['p_holm']:.3g} |"
        )
    lines += ["", "| initial reach of | runs | reach (min-max) | Spearman rho with test loss | p |"]
    lines.append("| --- | ---: | --- | ---: | ---: |")
    for name, r in result["reach_vs_outcome"].items():
        low, high = r["reach"]
        rho = "-" if r["rho"] is None else f"{r['rho']:+.2f} | {r['p']:.3g}"
        lines.append(
            f"| {name} | {r['runs']} | {low}-{high} | {rho}{' | -' if r['rho'] is None else ''} |"
        )
    if result["time_to_solve"]:
        lines += ["", "| arm | median epochs to solve (Kaplan-Meier) | log-rank p | Holm p |"]
        lines.append("| --- | ---: | ---: | ---: |")
        for r in result["time_to_solve"]:
            median = "not reached" if r["median_epochs"] is None else f"{r['median_epochs']:g}"
            p = "- | -" if r["p"] is None else f"{r['p']:.3g} | {r['p_holm']:.3g}"
            lines.append(f"| {r['arm']} | {median} | {p} |")
    return "\n".join(lines)


def _worker(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    index, count = int(index), int(count or 1)
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected K/N with 0 <= K < N, got {text!r}")
    return index, count


def main(argv=None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("pilot", "main", "report"))
    parser.add_argument("--task", choices=tuple(TASKS), default="adding-100")
    parser.add_argument("--out", default="experiments/results/forget_bias", help="run files")
    parser.add_argument("--worker", type=_worker, default=(0, 1), help="K/N: this share")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--json", help="with report: write the analysis here")
    args = parser.parse_args(argv)
    if args.smoke and args.task not in SMOKE:
        parser.error(f"--smoke has sizes for {', '.join(SMOKE)} only")
    if args.stage != "report":
        run_stage(args.stage, args.task, args.out, args.worker, args.smoke)
        return None
    result = report(args.out, args.task)
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
