"""The experiment scripts run end to end at their smoke sizes. The timing scripts
(bench, callback_overhead), which are run on GPUs with torch and JAX, run on every
backend; the studies run once (their parts are tested on every backend)."""

import importlib.util
import json
import os
import pathlib
import types

import keras
import numpy as np
import pytest
from helpers import read_events

import kgates
from kgates.cells import _backend
from kgates.inspect import _gradflow as gradflow

EXPERIMENTS = pathlib.Path(__file__).parent.parent / "experiments"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.once
def test_gate_dashboards_writes_every_kind_of_dashboard(tmp_path):
    _load("gate_dashboards").main(["--smoke", "--logdir", str(tmp_path)])
    tags = read_events(str(tmp_path), "train").Tags()
    assert "gates/lstm/f" in tags["histograms"] and "gates/gru/z" in tags["histograms"]
    assert {"cell_state/lstm", "gradient_flow/gru", "saturation_scatter/lstm"} <= set(
        tags["images"]
    )


def test_bench_reports_a_row_that_cannot_run_and_times_the_rest(monkeypatch, capsys):
    bench = _load("bench")

    def out_of_memory():
        raise MemoryError("out of device memory\nmore")

    runs = bench._flow_runs
    monkeypatch.setattr(
        bench, "_flow_runs", lambda *a: {**runs(*a), "doomed": {"forward": out_of_memory}}
    )
    result = bench.bench("lstm", 4, 5, 3, repeats=1, groups=("layers",))
    assert result["failed"] == {"doomed": "MemoryError: out of device memory"}
    assert "doomed" not in result["median_s"] and "kgates LSTM" in result["median_s"]
    bench._print_result(result)
    assert "doomed                          failed: MemoryError" in capsys.readouterr().out
    second = {**result, "ratio": {**result["ratio"], "doomed": {"forward": 2.0}}}
    table = bench.markdown(
        {"results": [{**result, "family": "lstm"}, {**second, "family": "lstm"}]}
    )
    assert table.splitlines()[0].endswith("| doomed |") and table.splitlines()[2].endswith("| - |")


def _timed(**rows) -> dict:
    return {name: {"forward": seconds} for name, seconds in rows.items()}


NUMBERS, FLOW = "dashboard numbers(keras LSTM)", "gradient flow, one pass"


def _case(family: str, ok: bool = True) -> dict:  # a gpu_checks.py result
    return {"family": family, "ok": ok}


def test_callback_overhead_chooses_the_faster_row_of_the_most_units():
    choices = _load("callback_overhead").choices
    small = {
        NUMBERS: 0.01,
        "dashboard numbers, spread": 0.02,
        "dashboard numbers, compare": 0.03,
        FLOW: 0.01,
        "gradient flow, unrolled": 0.02,
    }
    large = {**small, NUMBERS: 0.3, "dashboard numbers, spread": 0.2, FLOW: 0.4}
    large["dashboard numbers, compare"] = 0.05
    bench = {
        "results": [
            {"family": "lstm", "units": 512, "median_s": _timed(**large)},
            {"family": "lstm", "units": 128, "median_s": _timed(**small)},
            {"family": "gru", "units": 1024, "median_s": _timed(**small)},
        ]
    }
    counted = {"cases": [_case("bucket counts, spread"), _case("bucket counts, compare")]}
    assert choices(bench, counted) == {
        "counting": "compare",
        "one_pass": False,
        "triton_scan": False,
    }
    assert choices(bench)["counting"] is None  # unchecked ways: the default
    del large["dashboard numbers, compare"]  # failed there (out of memory, say)
    bench["results"][0]["median_s"] = _timed(**large)
    assert choices(bench, counted)["counting"] == "spread"
    counted["cases"][0]["ok"] = False  # spread counted wrong on the device
    assert choices(bench, counted)["counting"] is None  # the default (scatter): nothing else
    # torch: bincount only; the Triton scan where the checks hold it and all passed
    rows = {NUMBERS: 0.1, "dashboard numbers, Triton scan": 0.05, FLOW: 0.3}
    rows.update({f"{FLOW}, Triton scan": 0.08, "gradient flow, unrolled": 0.2})
    torch = {"results": [{"family": "lstm", "units": 512, "median_s": _timed(**rows)}]}
    cases = [_case("lstm"), _case("lstm, Triton scan"), _case("bucket counts, spread", False)]
    checks = {"cases": cases}  # (a way of counting found wrong has nothing to do with Triton)
    assert choices(torch, checks) == {"counting": None, "one_pass": True, "triton_scan": True}
    assert choices(torch) == {"counting": None, "one_pass": False, "triton_scan": False}
    checks = {"cases": [*cases, _case("lstm", False)]}
    assert choices(torch, checks)["triton_scan"] is False
    assert choices({"results": []}) == {"counting": None, "one_pass": None, "triton_scan": False}


def test_callback_overhead_refuses_a_bad_choice_file_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        _load("callback_overhead").main(["--smoke", "--choose-from", str(tmp_path / "no.json")])
    assert exit.value.code == 2
    assert "--choose-from: not a bench.py and gpu_checks.py JSON" in capsys.readouterr().err


def test_callback_overhead_reports_its_measures(tmp_path):
    bench = tmp_path / "bench.json"  # the choices, as on a GPU: from timings made before
    rows = {NUMBERS: 0.3, "dashboard numbers, spread": 0.2, "dashboard numbers, compare": 0.1}
    rows.update({FLOW: 0.1, "gradient flow, unrolled": 0.2})
    bench.write_text(
        json.dumps({"results": [{"family": "lstm", "units": 8, "median_s": _timed(**rows)}]})
    )
    checks = tmp_path / "checks.json"
    checks.write_text(json.dumps({"cases": [_case("bucket counts, compare")]}))
    args = ["--smoke", "--json", str(tmp_path / "r.json"), "--choose-from", str(bench), str(checks)]
    result = _load("callback_overhead").main([*args, "--flow", "unrolled"])  # given: it wins
    assert result["choices"] == {"counting": "compare", "one_pass": False, "triton_scan": False}
    assert _backend.COUNTING is None and gradflow.ONE_PASS is None  # as they were
    assert set(result["median_epoch_s"]) == {"none", "keras.TensorBoard", "kgates.TensorBoard"}
    assert result["drawing_cpu_s_per_epoch"] > 0  # images were drawn and timed
    # per run: a dashboard per epoch and the end-of-training call
    size = result["size"]
    assert len(result["work_s"]["dashboards"]) == size["rounds"] * (size["epochs"] + 1)
    # each dashboard's numbers and gradient flow, timed inside it
    for part in ("numbers", "flow"):
        assert len(result["work_s"][part]) == len(result["work_s"]["dashboards"])
    assert 0 < result["gradient_flow_s_median"] < result["dashboard_s_median"]
    assert (tmp_path / "r.json").exists()


def test_gpu_checks_hold_bidirectional_gates_to_the_references(tmp_path):
    results = _load("gpu_checks").main(["--json", str(tmp_path / "c.json")])
    assert len(results) == 13 and all(r["ok"] for r in results)
    assert all(r["max_difference"] < 1e-5 for r in results)  # float32 on a CPU
    assert json.load(open(tmp_path / "c.json"))["cases"] == results


def test_bench_times_every_variant_against_the_keras_layer(tmp_path):
    report = _load("bench").main(["--smoke", "--json", str(tmp_path / "b.json")])
    (result,) = report["results"]
    # each ratio is a row's median over the Keras layer's, measured in the same run
    row, base = result["median_s"]["kgates LSTM+gates"], result["median_s"]["keras LSTM"]
    for kind in ("forward", "train"):
        want = row[kind] / base[kind]
        assert result["ratio"]["kgates LSTM+gates"][kind] == pytest.approx(want, rel=0.01)
    assert {"kgates LSTM+gates", "kgates RNN(cell)+gates", "trace(keras LSTM)"} <= set(
        result["median_s"]
    )
    assert (tmp_path / "b.json").exists()
    # on a CPU the recomputed gates are the stepped cell's (the GPU run states its own)
    for worst in report["check"]["lstm"].values():
        assert set(worst) == {"h", "i", "f", "g", "o", "c"}
        assert max(worst.values()) < 1e-5


def test_bench_variants_time_only_the_groups_asked_for(tmp_path):
    report = _load("bench").main(["--smoke", "--variants", "scan", "--family", "lstm", "gru"])
    lstm, gru = report["results"]
    # the Keras layer is every ratio's base, so it is always timed
    assert set(lstm["median_s"]) == {"keras LSTM"} | {f"c scan, {m}" for m in kgates.SCAN_METHODS}
    assert set(gru["median_s"]) == {"keras GRU"}  # the c scans are the LSTM's
    report = _load("bench").main(["--smoke", "--variants", "layers", "trace", "flow"])
    want = {
        "keras LSTM",
        "kgates LSTM",
        "kgates LSTM+gates",
        "keras LSTM h->host",
        "trace(keras LSTM)",
        "trace(keras LSTM) on device",
        "dashboard numbers(keras LSTM)",
        "gradient flow, one pass",
        "gradient flow, unrolled",
    }
    if keras.backend.backend() != "torch":  # torch counts buckets with bincount
        want |= {"dashboard numbers, spread", "dashboard numbers, compare"}
    assert set(report["results"][0]["median_s"]) == want


@pytest.mark.once  # its workers are `kgates tune` processes, on this session's backend
def test_search_space_odyssey_compares_variants_with_v_and_workers_run_the_same_trials(
    tmp_path,
):
    study = _load("search_space_odyssey")
    results = {}
    for workers in ("0", "2"):
        directory = str(tmp_path / workers)
        result = study.main(["--task", "code", "--smoke", "--directory", directory,
                             "--variants", "V,NFG", "--workers", workers,
                             "--json", str(tmp_path / f"{workers}.json")])  # fmt: skip
        trials = sorted(kgates.load_trials(directory), key=lambda t: t["id"])
        results[workers] = [(t["cell"], t["values"]["learning_rate"], t["test"]) for t in trials]
        if workers == "0":
            (row,) = result["rows"]
            assert row["cell"] == "NFG" and row["pairs"] == 2 and row["claim"] == "worse"
            assert row["verdict"] in ("reproduced", "refuted", "inconclusive at this power")
            spec = json.load(open(os.path.join(directory, "kgates_search.json")))
            assert spec["tuner"] == "paired" and spec["margin"] == study.MARGINS["code"]
            assert all(t["test"] is not None for t in trials)  # scored on the held-out split
            saved = json.load(open(tmp_path / "0.json"))["trials"]
            assert [t["test"] for t in saved] == [t["test"] for t in kgates.load_trials(directory)]
    # a worker gets the same configurations and weight seeds as a single process
    assert len(results["2"]) == 4 and results["2"] == results["0"]


def test_the_odyssey_verdicts_by_hand():
    study = _load("search_space_odyssey")
    row = {"ci": (0.02, 0.3), "p_holm": 0.01}
    assert study.verdict("worse", row, 0.1) == "reproduced"
    assert study.verdict("worse", {**row, "p_holm": 0.2}, 0.1) == "inconclusive at this power"
    assert study.verdict("worse", {"ci": (-0.3, -0.02), "p_holm": 0.01}, 0.1) == "refuted"
    assert study.verdict("no worse", {"ci": (-0.2, 0.05)}, 0.1) == "reproduced"
    assert study.verdict("no worse", {"ci": (0.12, 0.3)}, 0.1) == "refuted"
    assert study.verdict("no worse", {"ci": (-0.01, 0.2)}, 0.1) == "inconclusive at this power"


@pytest.mark.once
def test_lstm_vs_gru_runs_at_one_rate_without_a_pilot_and_pairs_each_gru_with_its_lstm(
    tmp_path,
):
    study = _load("lstm_vs_gru")
    out = ["--smoke", "--out", str(tmp_path / "runs")]
    study.main(["main", *out, "--lr", "0.01"])  # --lr: every arm at one rate, no pilot
    result = study.main(["report", *out, "--lr", "0.01"])
    assert {(r["cell"], r["reference"]) for r in result["comparisons"]} == set(study.COMPARISONS)
    assert all("tost_p" in r and r["margin"] == 0.01 for r in result["comparisons"])
    assert all(a["runs"] == 2 and a["lr"] == 0.01 for a in result["arms"].values())
    assert not any(a["lr_at_edge"] for a in result["arms"].values())
    with pytest.raises(SystemExit, match="pilot of adding-100 has not finished"):
        study.main(["report", *out])  # the pilot's rates: there is no pilot
    with pytest.raises(SystemExit) as refused:
        study.main(["pilot", *out, "--lr", "0.5"])
    assert refused.value.code == 2


@pytest.mark.parametrize("task", ["adding", "copy", "music"])
def test_lstm_vs_gru_counts_weights_as_keras_does_and_matches_them(task):
    study = _load("lstm_vs_gru")
    sizes = {"adding": {}, "copy": {}, "music": {"length": 16, "chorales": 20}}
    made = kgates.make_task(task, samples=8, **sizes[task])
    features, outputs = made.x_train.shape[-1], made.outputs or made.targets
    for arm in study.ARMS:
        units = study.units_of(arm, made)
        model = study.build(arm, made, seed=0, lr=1e-3)
        cell = arm[:3] if arm.startswith("GRU") else "LSTM"
        assert model.count_params() == study.parameters(cell, units, features, outputs)
    for size in study.SIZES:  # no GRU one unit smaller or larger is closer to the LSTM
        lstm = study.build(f"LSTM-{size}", made, 0, 1e-3).count_params()
        units = study.units_of(f"GRU~{size}", made)
        gaps = [
            abs(study.parameters("GRU", u, features, outputs) - lstm)
            for u in (units - 1, units, units + 1)
        ]
        assert gaps[1] <= min(gaps[0], gaps[2])
        assert abs(gaps[1]) / lstm < 0.02


@pytest.mark.once
def test_forget_bias_stages_resume_and_pair_the_arms_by_seed(tmp_path, capsys):
    study = _load("forget_bias")
    out = str(tmp_path / "runs")
    common = ["--smoke", "--out", out]
    study.main(["pilot", *common, "--worker", "0/2"])
    study.main(["pilot", *common, "--worker", "1/2"])
    pilot = sorted(os.listdir(out))
    assert len(pilot) == len(study.ARMS) * 2  # --smoke: one seed, two learning rates
    stamps = {name: os.path.getmtime(os.path.join(out, name)) for name in pilot}
    capsys.readouterr()
    study.main(["pilot", *common])  # resumed: nothing left to run
    assert capsys.readouterr().out == ""
    assert stamps == {name: os.path.getmtime(os.path.join(out, name)) for name in pilot}
    study.main(["main", *common])
    result = study.main(["report", *common, "--json", str(tmp_path / "r.json")])
    assert set(result["arms"]) == set(study.ARMS)
    assert all(a["runs"] == 2 for a in result["arms"].values())
    assert {(r["cell"], r["reference"]) for r in result["comparisons"]} == set(study.COMPARISONS)
    reach = result["reach_vs_outcome"]  # initial reach of every main run, cached
    assert reach["c, all runs"]["runs"] == 2 * len(study.ARMS)
    assert len(json.load(open(os.path.join(out, "reach.json")))) == 2 * len(study.ARMS)
    run = json.load(open(os.path.join(out, sorted(os.listdir(out))[0])))
    assert len(run["val_loss"]) == len(run["test_loss"]) == run["epochs"] == 2
    # runs at another rate (as `main --lr 0.5` names them) are not mixed into the report
    for name in os.listdir(out):
        if name.startswith("main-"):
            with open(os.path.join(out, name)) as f:
                run = {**json.load(f), "lr": 0.5}
            key = study.staged._key("main", run["task"], run["arm"], run["lr"], run["seed"])
            study.staged._save(out, key, run)
    assert len([n for n in os.listdir(out) if n.startswith("main-")]) == 4 * len(study.ARMS)
    again = study.main(["report", *common])
    assert again["arms"] == result["arms"]


def test_the_forget_bias_arms_set_the_biases_they_name():
    study = _load("forget_bias")
    task = study.staged.task_data(study, "adding-100", 0, smoke=True)
    biases = {}
    for arm in study.ARMS:
        model = study.build(arm, task, seed=3, lr=1e-3, smoke=True)
        layer = next(x for x in model.layers if isinstance(x, kgates.LSTM))
        bias = keras.ops.convert_to_numpy(layer.cell.bias)
        kernel = keras.ops.convert_to_numpy(layer.cell.kernel)
        biases[arm] = {"i": bias[:4], "f": bias[4:8], "other": bias[8:], "kernel": kernel}
    for value in (0, 1, 2):
        np.testing.assert_array_equal(biases[f"b_f={value}"]["f"], value)
        np.testing.assert_array_equal(biases[f"b_f={value}"]["i"], 0)
    chrono, zero_i = biases["chrono"], biases["chrono, b_i=0"]
    timescale = task.timescale  # b_f = log u, u in [1, T - 1]
    assert np.all((chrono["f"] >= 0) & (chrono["f"] <= np.log(timescale - 1)))
    np.testing.assert_array_equal(chrono["i"], -chrono["f"])
    np.testing.assert_array_equal(zero_i["f"], chrono["f"])
    np.testing.assert_array_equal(zero_i["i"], 0)
    for arm in study.ARMS:  # nothing else differs between arms of one seed
        np.testing.assert_array_equal(biases[arm]["other"], 0)
        np.testing.assert_array_equal(biases[arm]["kernel"], biases["b_f=1"]["kernel"])


@pytest.mark.once
def test_gradient_flow_reaches_for_every_model(tmp_path):
    result = _load("gradient_flow").main(["--smoke", "--png", str(tmp_path / "g.png")])
    assert set(result["models"]) == {"SimpleRNN", "GRU", "LSTM", "NFG"}
    assert "reach_trained_c" in result["models"]["LSTM"]
    assert "reach_trained_c" not in result["models"]["GRU"]
    assert all(0 < m["reach_init_h"] <= 8 for m in result["models"].values())


def test_the_bigram_baseline_worked_by_hand():
    from kgates.study._code import VOCABULARY
    from kgates.study._tasks import bigram_loss as bigram  # the code task's baseline

    # after character 1 the training data saw 2 once: add-one gives 2 / (V + 1)
    loss = bigram(np.array([[1, 2]]), np.array([[2, 1]]), np.array([[1]]), np.array([[2]]))
    assert loss == pytest.approx(-np.log(2 / (VOCABULARY + 1)))


@pytest.mark.once
def test_interpretable_units_chooses_and_scores_units_on_separate_halves(tmp_path):
    result = _load("interpretable_units").main(
        ["--smoke", "--json", str(tmp_path / "u.json"), "--png", str(tmp_path / "u.png")]
    )
    assert set(result["models"]) == {"LSTM", "GRU"}
    for model in result["models"].values():
        assert model["units"]  # at least one annotation varies in the smoke windows
        for unit in model["units"].values():
            windows = result["probe_windows"]
            assert unit["windows_scored"] == windows - windows // 2
            assert 1 <= unit["ablation_rank"] <= result["size"]["units"]
            assert -1 <= unit["r_chosen_half"] <= 1
    assert 0 <= result["span_test"]["p"] <= 1
    assert (tmp_path / "u.png").stat().st_size > 1000 and (tmp_path / "u.json").exists()


@pytest.mark.once
def test_explorer_speed_times_select_to_match_in_the_browser(tmp_path):
    result = _load("explorer_speed").main(["--smoke", "--json", str(tmp_path / "s.json")])
    # the planted pattern: 8 units on at steps 40-43 of every one of the 8 sequences;
    # the selection is one of them, so the other 7 are the matches
    assert result["pattern_units_and_matches"] == (8, 7)
    assert result["select_to_drawn_ms_median"] > 0 and (tmp_path / "s.json").exists()


@pytest.mark.once
def test_gradient_flow_init_predicts_and_compares_reach(tmp_path):
    result = _load("gradient_flow_init").main(["--smoke", "--json", str(tmp_path / "g.json")])
    runs = result["runs"]
    assert len(runs) == 3 * 7  # seeds x models
    nfg = [r for r in runs if r["model"] == "NFG"]
    assert all(r["reach_c"] == r["predicted_c"] == 12 for r in nfg)  # f = 1: all 12 steps
    # sigma(0) = 1/2: 0.5^k >= 0.01 for k = 0..6, so 7 steps by hand
    assert {r["predicted_c"] for r in runs if r["model"] == "LSTM b_f=0"} == {7}
    assert {t["compare"] for t in result["analysis"]["tests"]} == {
        "LSTM b_f=1 c vs SimpleRNN h",
        "LSTM b_f=1 c vs GRU h",
    }


def test_the_pilot_grows_a_grid_whose_best_rate_is_an_end(tmp_path):
    study = _load("forget_bias")  # rates 1e-3 ... 1e-1, two pilot seeds
    staged, rates, arm = study.staged, list(study.LRS), "b_f=1"

    def pilot(scores):  # {rate: validation scores of the pilot seeds}; None: diverged
        out = tmp_path / str(len(os.listdir(tmp_path)))
        for lr, values in scores.items():
            for seed, val in zip(study.PILOT_SEEDS, values):
                record = {"arm": arm, "lr": lr, "seed": seed, "val": val, "epochs": 25}
                staged._save(str(out), staged._key("pilot", "adding-100", arm, lr, seed), record)
        return str(out), staged.load(str(out), "pilot", "adding-100")

    def grid(scores):
        return staged.pilot_grid(study, pilot(scores)[1], arm, smoke=False)

    flat = {lr: [1.0, 1.0] for lr in rates}
    assert grid({**flat, 1e-2: [0.5, 0.6]}) == rates  # best inside: as it is
    top = {**flat, 1e-1: [0.5, 0.5]}
    assert grid(top) == [*rates, 0.3]  # best at the top: one step of 1-3-10 up
    assert grid({**top, 0.3: [0.5]}) == [*rates, 0.3]  # 0.3 has one seed of two
    assert grid({**top, 0.3: [0.4, None]}) == [*rates, 0.3]  # median: (0.4 + worst) / 2
    assert grid({**top, 0.3: [0.4, 0.4], 1.0: [0.3, 0.3]}) == [*rates, 0.3, 1.0]  # EXTEND
    assert grid({**flat, 1e-3: [0.5, 0.5], 3e-4: [0.4, 0.4]}) == [1e-4, 3e-4, *rates]
    assert staged.pilot_grid(study, pilot(top)[1], arm, smoke=True) == rates[:2]

    one_arm = types.SimpleNamespace(**{**vars(study), "ARMS": [arm]})
    out, _ = pilot({**top, 0.3: [0.4, 0.4], 1.0: [0.3, 0.3]})
    assert staged.chosen_rates(one_arm, out, "adding-100") == {arm: 1.0}
    out, _ = pilot(top)  # 0.3 not yet run: the main stage waits for it
    with pytest.raises(SystemExit, match="grows a grid"):
        staged.chosen_rates(one_arm, out, "adding-100")


def test_the_forget_bias_time_to_solve_worked_by_hand():
    study = _load("forget_bias")

    def runs(arm, solved):
        return [{"task": "adding-100", "arm": arm, "epochs": 25, "solved_epoch": e} for e in solved]

    # b_f=1 solves at epochs 5 and 6, a third run never: Kaplan-Meier's median is 6
    # (2/3 left after epoch 5, 1/3 after 6); b_f=0 never solves
    time_to_solve = study.staged.time_to_solve
    rows = time_to_solve(study, runs("b_f=1", [5, 6, None]) + runs("b_f=0", [None] * 3))
    by = {r["arm"]: r for r in rows}
    assert by["b_f=1"]["median_epochs"] == 6 and by["b_f=0"]["median_epochs"] is None
    assert 0 < by["b_f=0"]["p"] < 0.5 and by["b_f=1"]["p"] is None
    nobody = time_to_solve(study, runs("b_f=1", [None] * 2) + runs("b_f=0", [None] * 2))
    assert all(r["p"] is None for r in nobody)  # no event: no test
