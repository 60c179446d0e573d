"""Interpretable units in character models of Python source (Karpathy et al. 2015).

An LSTM and a GRU learn the `code` task (next character of the standard library's
own source), then `kgates.find_units` ranks every unit of every h, c and gate
against the task's annotations (inside a string, inside a comment, bracket depth,
indentation, column). The best unit for an annotation is chosen on half of the
validation windows and scored on the other half (Pearson r, with a bootstrap 95%
interval over windows), so that choosing it does not inflate its score. The
chosen unit is then held at its mean inside the recurrence (`kgates.ablate`) and
its loss change set against every other unit's. Last, the memory spans
(`kgates.memory`) of the two models' units, compared by a Mann-Whitney U test.

    python experiments/interpretable_units.py --json experiments/results/interpretable_units.json \
        --png experiments/results/interpretable_units.png    # ~11 min on 2 CPU cores
    python experiments/interpretable_units.py --smoke
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy import stats

import kgates
from kgates.study._code import ALPHABET, VOCABULARY
from kgates.study._tasks import bigram_loss

FULL = {"samples": 4000, "length": 100, "units": 128, "epochs": 12, "probe": 400}
SMOKE = {"samples": 40, "length": 20, "units": 8, "epochs": 1, "probe": 16}
BOOTSTRAP = 1000


def train(kind: str, task, size: dict) -> tuple[keras.Model, float]:
    keras.utils.set_random_seed(0)
    layer = {"LSTM": keras.layers.LSTM, "GRU": keras.layers.GRU}[kind]
    model = keras.Sequential(
        [
            keras.Input((size["length"],), dtype="int32"),
            keras.layers.Embedding(VOCABULARY, 32),
            layer(size["units"], return_sequences=True, name="rnn"),
            keras.layers.Dense(VOCABULARY),
        ]
    )
    model.compile(
        keras.optimizers.Adam(3e-3, clipnorm=1.0),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(
        task.x_train,
        task.y_train,
        validation_data=(task.x_val, task.y_val),
        epochs=size["epochs"],
        batch_size=64,
        verbose=0,
    )
    return model, float(min(history.history["val_loss"]))


def _r(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; NaN when a resample leaves either side constant."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def held_out_units(model, x, notes: dict, seed: int = 0) -> dict:
    """Per annotation: the unit chosen on one half of the windows, scored on the other
    (r and a bootstrap 95% interval over windows), and its loss change when held."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    choose, score = order[: len(x) // 2], order[len(x) // 2 :]
    usable = {k: v[choose] for k, v in notes.items() if np.unique(v[choose]).size > 1}
    units = kgates.find_units(model, x[choose], usable)
    traced = kgates.trace(model, x[score])["rnn"]
    result = {}
    for name in usable:
        best = units.top(name, 1)[0]
        values = np.asarray(traced[best["key"]])[..., best["unit"]]
        target = notes[name][score].astype("float64")
        r = _r(values, target)
        draws = [
            _r(values[pick], target[pick])
            for pick in (rng.integers(0, len(score), len(score)) for _ in range(BOOTSTRAP))
        ]
        low, high = np.nanpercentile(draws, [2.5, 97.5])
        result[name] = {
            "key": best["key"],
            "unit": best["unit"],
            "r_chosen_half": best["r"],
            "r_held_out": r,
            "r_95ci": [float(low), float(high)],
            "probe": best["probe"],
            "probe_chance": units.chance[name],
            "windows_scored": int(len(score)),
        }
    return result


def ablations(model, x, y, found: dict) -> None:
    """Adds to each found unit the loss change when it is held at its mean, and its
    rank among every unit of the same h, c or gate (1: the largest change)."""
    tables = {}
    for unit in found.values():
        key = unit["key"]
        if key not in tables:
            tables[key] = kgates.ablate(model, x, y, layer="rnn", gate=key, held=("mean",))
        table = tables[key]
        changes = table.changes[:, 0]
        unit["ablation_loss_change"] = float(changes[unit["unit"]])
        unit["ablation_rank"] = int((changes > changes[unit["unit"]]).sum()) + 1
        unit["ablation_median_change_all_units"] = float(np.median(changes))
        unit["ablation_seconds"] = table.seconds


def spans(model, x) -> np.ndarray:
    """Each unit's median memory span over the probe's steps."""
    span = kgates.memory(model, x)["rnn"].span
    return np.ma.median(span.reshape(-1, span.shape[-1]), axis=0).filled(np.nan)


def run(size: dict) -> dict:
    start = time.time()
    task = kgates.make_task("code", 0, samples=size["samples"], length=size["length"])
    _, notes = kgates.code_annotations(size["samples"], size["length"], seed=0)
    probe = slice(0, min(size["probe"], len(task.x_val)))
    x, y = task.x_val[probe], task.y_val[probe]
    notes = {k: v[probe] for k, v in notes.items()}
    result = {
        "size": size,
        "baselines": {
            "unigram": task.baseline,
            "bigram": bigram_loss(task.x_train, task.y_train, task.x_val, task.y_val),
        },
        "models": {},
    }
    unit_spans = {}
    for kind in ("LSTM", "GRU"):
        model, val_loss = train(kind, task, size)
        found = held_out_units(model, x, notes)
        ablations(model, x, y, found)
        unit_spans[kind] = spans(model, x)
        result["models"][kind] = {
            "val_loss": val_loss,
            "units": found,
            "span_median": float(np.nanmedian(unit_spans[kind])),
            "span_quartiles": [float(q) for q in np.nanpercentile(unit_spans[kind], [25, 75])],
        }
        result["models"][kind]["_model"] = model
        print(f"{kind}: val loss {val_loss:.3f} nats/char ({time.time() - start:.0f} s)")
    test = stats.mannwhitneyu(unit_spans["LSTM"], unit_spans["GRU"], alternative="two-sided")
    result["span_test"] = {
        "test": "Mann-Whitney U, two-sided, units' median spans",
        "U": float(test.statistic),
        "p": float(test.pvalue),
        "units_per_model": size["units"],
    }
    result["probe_windows"] = int(len(x))
    result["x_probe"] = x
    # the window the picture shows: the one where the annotations vary most
    varied = sum(v.std(axis=1) / (v.std() or 1.0) for v in notes.values())
    result["shown_window"] = int(np.argmax(varied))
    return result


def text_picture(model, window: np.ndarray, units: dict, path: str) -> None:
    """A window of source, once per chosen unit, each character on a colour that is
    the unit's value there (blue negative, red positive), as in Karpathy et al. Fig. 2."""
    traced = kgates.trace(model, window[None])["rnn"]
    chars = ["" if c == 0 else ALPHABET[c - 1] for c in window]
    lines, row, col = [], 0, 0
    for c in chars:
        lines.append((row, col, c))
        row, col = (row + 1, 0) if c == "\n" else (row, col + 1)
    rows, cols = row + 1, max(c for _, c, _ in lines) + 2
    fig = Figure(figsize=(0.11 * cols + 1.5, 0.19 * (rows + 2) * len(units)))
    for k, (name, unit) in enumerate(units.items()):
        ax = fig.add_subplot(len(units), 1, k + 1)
        values = np.asarray(traced[unit["key"]])[0, :, unit["unit"]]
        scale = np.abs(values).max() or 1.0
        for (r, c, ch), v in zip(lines, values / scale):
            face = (1.0, 1 - v, 1 - v) if v >= 0 else (1 + v, 1 + v, 1.0)
            ax.add_patch(Rectangle((c, r), 1, 1, facecolor=face, edgecolor="none"))
            if ch.strip():
                ax.text(c + 0.5, r + 0.75, ch, ha="center", fontsize=6, family="monospace")
        ax.set(xlim=(0, cols), ylim=(rows, 0), xticks=[], yticks=[])
        ax.set_title(
            f"{name}: rnn/{unit['key']}[{unit['unit']}], held-out r = {unit['r_held_out']:+.2f}",
            fontsize=8,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(result: dict) -> str:
    base = result["baselines"]
    lines = [
        f"Baselines (validation, nats/char): unigram {base['unigram']:.3f}, "
        f"bigram {base['bigram']:.3f}.",
        "",
        "| model | val loss | annotation | unit | r (chosen half) | r held out [95% CI] | "
        "probe (chance) | loss change held at mean | rank of its change |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, m in result["models"].items():
        for name, u in m["units"].items():
            lines.append(
                f"| {kind} | {m['val_loss']:.3f} | {name} | {u['key']}[{u['unit']}] | "
                f"{u['r_chosen_half']:+.2f} | {u['r_held_out']:+.2f} [{u['r_95ci'][0]:+.2f}, "
                f"{u['r_95ci'][1]:+.2f}] | {u['probe']:.2f} ({u['probe_chance']:.2f}) | "
                f"{u['ablation_loss_change']:+.4f} "
                f"| {u['ablation_rank']} of {result['size']['units']} |"
            )
    span = result["span_test"]
    lines += [
        "",
        "Memory span (median over units of each unit's median over the probe's steps): "
        + ", ".join(
            f"{k} {m['span_median']:.2f} [IQR {m['span_quartiles'][0]:.2f}-"
            f"{m['span_quartiles'][1]:.2f}]"
            for k, m in result["models"].items()
        )
        + f"; {span['test']}: U = {span['U']:.0f}, p = {span['p']:.2g} "
        f"({span['units_per_model']} units each).",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--png", help="draw the chosen LSTM units over a window here")
    args = parser.parse_args(argv)
    result = run(SMOKE if args.smoke else FULL)
    print(markdown(result))
    models = {k: m.pop("_model") for k, m in result["models"].items()}
    x = result.pop("x_probe")
    if args.png:
        shown = x[result["shown_window"]]
        text_picture(models["LSTM"], shown, result["models"]["LSTM"]["units"], args.png)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
