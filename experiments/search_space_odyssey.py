"""Greff et al.'s "LSTM: A Search Space Odyssey", paired: do NFG and NOAF do clearly
worse than V, and are CIFG and NP no worse?

For each task one `kgates tune --tuner paired` search: every variant runs on the same
configurations (a scrambled Sobol sequence over learning rate, units, dropout) with
the same weight seed per configuration, so each variant is compared with V pair by
pair. The numbers are test scores (each trial's held-out test loss at its best
validation epoch; a diverged trial scores the worst of the search). Per variant
against V: the Hodges-Lehmann shift with a bootstrap 95% interval, the Wilcoxon
signed-rank test (Holm across variants), non-inferiority by the margin fixed below
before any run, and TOST within it.

Verdicts, per claim: "clearly worse" is reproduced when the shift's interval lies
above 0 and Holm's p < 0.05, refuted when it lies below 0; "no worse" is reproduced
when the interval's upper bound is below the margin, refuted when its lower bound is
above it; anything else is inconclusive at this power.

    python experiments/search_space_odyssey.py --task music --json odyssey_music.json
    python experiments/search_space_odyssey.py --task code --json odyssey_code.json
    python experiments/search_space_odyssey.py --task code --smoke --directory /tmp/odyssey

Each is one resumable search (`runs/odyssey-TASK`; the same command continues it).
At the full size a search is 5 variants x 24 configurations = 120 trials.
`--workers N` runs it as Keras Tuner's chief with N `kgates tune --worker` processes
on this machine (the trials, their configurations and seeds are the same).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
from unittest import mock

import kgates
from kgates.study._paired import equivalence_p, paired_against_reference

VARIANTS = ("V", "NP", "CIFG", "NFG", "NOAF")
CLAIMS = {"NFG": "worse", "NOAF": "worse", "CIFG": "no worse", "NP": "no worse"}
# Fixed before any run, in the objective's units: about 1% of a trained model's loss
# (music: ~8 nats per step summed over 88 keys; code: ~1.5-2 nats per character).
MARGINS = {"music": 0.1, "code": 0.02}
FULL = {
    "music": {"sizes": {"samples": 2000, "length": 64}, "epochs": 20},
    "code": {"sizes": {"samples": 4000, "length": 100}, "epochs": 15},
    "configurations": 24,
    "space": {"units": (64, 128), "learning_rate": (1e-4, 1e-1), "dropout": (0.0, 0.3)},
}
SMOKE = {
    "music": {"sizes": {"samples": 16, "length": 8, "chorales": 20}, "epochs": 1},
    "code": {"sizes": {"samples": 16, "length": 8}, "epochs": 1},
    "configurations": 2,
    "space": {"units": 4, "learning_rate": (1e-3, 1e-2), "dropout": 0.0},
}
COMMON = {"layers": 1, "clipnorm": 1.0, "forget_bias": "one"}


def run(task: str, directory: str, size: dict, variants=VARIANTS, seed: int = 0) -> list[dict]:
    """The paired search (resumed if `directory` holds it); returns its trials."""
    kgates.tune(
        directory,
        task=task,
        cells=variants,
        tuner="paired",
        margin=MARGINS[task],
        max_trials=len(variants) * size["configurations"],
        epochs=size[task]["epochs"],
        seed=seed,
        sizes=size[task]["sizes"],
        space={**size["space"], **COMMON},
        gate_freq=0,
        verbose=0,
    )
    return kgates.load_trials(directory)


@contextlib.contextmanager
def workers(directory: str, count: int):
    """This process as the search's chief, with `count` workers on this machine."""
    if count == 0:
        yield
        return
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    command = [sys.executable, "-m", "kgates_cli", "tune", "--directory", directory]
    command += ["--worker", f"127.0.0.1:{port}", "--gate-freq", "0", "--verbose", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    started = [
        subprocess.Popen([*command, "--worker-id", f"worker-{i}"], env=env) for i in range(count)
    ]
    # this process is the chief while the search runs, and no longer after it
    chief = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
    with mock.patch.dict(os.environ, {**chief, "KERASTUNER_TUNER_ID": "chief"}):
        try:
            yield
        except BaseException:  # the chief failed or was stopped: so are its workers
            for process in started:
                process.terminate()
            raise
        finally:
            for process in started:
                process.wait()


def trial_records(trials: list[dict]) -> list[dict]:
    """What the JSON keeps of each trial: its configuration, scores and curves."""
    keys = ("id", "cell", "status", "completed", "values", "score", "test", "curves")
    return [{k: t[k] for k in keys} for t in trials]


def verdict(claim: str, row: dict, margin: float, alpha: float = 0.05) -> str:
    low, high = row["ci"]
    if claim == "worse":
        if low > 0 and row["p_holm"] < alpha:
            return "reproduced"
        return "refuted" if high < 0 else "inconclusive at this power"
    if high < margin:
        return "reproduced"
    return "refuted" if low > margin else "inconclusive at this power"


def analyse(task: str, trials: list[dict], variants=VARIANTS) -> dict:
    """The paired comparison with V on test scores, and a verdict per claim."""
    on_test = [{**t, "score": t["test"] if t["completed"] else None} for t in trials]
    for t in on_test:
        if t["score"] is None:  # diverged, or no test score: scored the worst below
            t["status"] = "FAILED"
    rows = paired_against_reference(on_test, "min", "V", len(variants))
    margin = MARGINS[task]
    for row in rows:
        row["tost_p"] = equivalence_p(row.pop("differences"), margin)
        claim = CLAIMS.get(row["cell"])
        row["claim"] = claim
        row["verdict"] = verdict(claim, row, margin) if claim else None
    failed = {v: sum(not t["completed"] for t in trials if t["cell"] == v) for v in variants}
    return {"task": task, "margin": margin, "trials": len(trials), "failed": failed, "rows": rows}


def markdown(result: dict) -> str:
    lines = [
        f"| variant - V | pairs | HL shift [95% CI] | Wilcoxon p (Holm) | "
        f"TOST p (±{result['margin']:g}) | claim | verdict |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in result["rows"]:
        low, high = r["ci"]
        lines.append(
            f"| {r['cell']} | {r['pairs']} | {r['shift']:+.4g} [{low:+.4g}, {high:+.4g}] | "
            f"{r['p']:.3g} ({r['p_holm']:.3g}) | {r['tost_p']:.3g} | {r['claim'] or '-'} | "
            f"{r['verdict'] or '-'} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=tuple(MARGINS), default="music")
    parser.add_argument("--directory", help="the search (default: runs/odyssey-TASK)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", help="write the comparison and the trials here")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: none)")
    args = parser.parse_args(argv)
    variants = tuple(args.variants.split(","))
    if variants[0] != "V":
        parser.error("--variants: the first must be V, the reference")
    directory = args.directory or os.path.join("runs", f"odyssey-{args.task}")
    if args.workers < 0:
        parser.error(f"--workers: expected 0 or more, got {args.workers}")
    with workers(directory, args.workers):
        trials = run(args.task, directory, SMOKE if args.smoke else FULL, variants)
    result = analyse(args.task, trials, variants)
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**result, "trials": trial_records(trials)}, f, indent=1, default=float)
    return result


if __name__ == "__main__":
    main()
