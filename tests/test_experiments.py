"""The experiment scripts run end to end at their smoke sizes."""

import importlib.util
import pathlib

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

EXPERIMENTS = pathlib.Path(__file__).parent.parent / "experiments"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gate_dashboards_writes_every_kind_of_dashboard(tmp_path):
    _load("gate_dashboards").main(["--smoke", "--logdir", str(tmp_path)])
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert "gates/lstm/f" in tags["histograms"] and "gates/gru/z" in tags["histograms"]
    assert {"cell_state/lstm", "gradient_flow/gru", "saturation_scatter/lstm"} <= set(
        tags["images"]
    )


def test_callback_overhead_reports_its_measures(tmp_path):
    result = _load("callback_overhead").main(["--smoke", "--json", str(tmp_path / "r.json")])
    assert set(result["median_epoch_s"]) == {"none", "keras.TensorBoard", "kgates.TensorBoard"}
    assert result["drawing_cpu_s_per_epoch"] > 0  # images were drawn and timed
    assert (tmp_path / "r.json").exists()


def test_bench_times_every_variant_against_the_keras_layer(tmp_path):
    results = _load("bench").main(["--smoke", "--json", str(tmp_path / "b.json")])
    (result,) = results
    assert result["ratio"]["keras LSTM"] == {"forward": 1.0, "train": 1.0}
    assert {"kgates LSTM+gates", "kgates RNN(cell)+gates", "trace(keras LSTM)"} <= set(
        result["median_s"]
    )
    assert (tmp_path / "b.json").exists()
