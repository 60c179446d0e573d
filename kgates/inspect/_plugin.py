"""The "Gates" tab: a TensorBoard plugin over the explorer records that
`kgates.TensorBoard` and `kgates inspect` write (plugin name `kgates`), and the
same explorer as one self-contained HTML file (`kgates explore`, `kgates.show`).

Both read through TensorBoard's data provider and run one front end,
`explorer/explorer.js`, shipped in the package (no network).
"""

from __future__ import annotations

import base64
import html
import json
import os
from importlib import resources

import numpy as np
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.context import RequestContext
from tensorboard.data import provider as data_provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from kgates.inspect._explorer import (
    PLUGIN_NAME,
    SEQUENCES,
    STEPS,
    UNITS,
    explorer_record,
    find_matches,
    finite_json,
    pattern_units,
    tokens_of,
    units_rows,
)

META = "explorer/meta"


def front_end() -> str:
    """The explorer's JavaScript module."""
    return resources.files("kgates.inspect").joinpath("explorer/explorer.js").read_text("utf-8")


class RecordStore:
    """Explorer records read through a TensorBoard data provider."""

    def __init__(self, provider, experiment_id: str = "", ctx=None):
        self._provider = provider
        self._experiment = experiment_id
        self._ctx = RequestContext() if ctx is None else ctx

    def _read(self, run: str | None, tag: str) -> dict:
        return self._provider.read_tensors(
            self._ctx,
            experiment_id=self._experiment,
            plugin_name=PLUGIN_NAME,
            downsample=100000,
            run_tag_filter=data_provider.RunTagFilter(
                runs=None if run is None else [run], tags=[tag]
            ),
        )

    def runs(self) -> dict[str, list[int]]:
        """`{run: [steps with a record]}`."""
        found = self._read(None, META)
        return {run: sorted({d.step for d in tags[META]}) for run, tags in found.items()}

    def _tensor(self, run: str, step: int, tag: str) -> np.ndarray:
        series = self._read(run, tag).get(run, {}).get(tag, [])
        for datum in series:
            if datum.step == step:
                return datum.numpy
        raise errors.NotFoundError(f"no {tag} at step {step} of run {run!r}")

    def meta(self, run: str, step: int) -> dict:
        value = self._tensor(run, step, META)
        return json.loads(value.item() if hasattr(value, "item") else value)

    def array(self, run: str, step: int, name: str) -> np.ndarray:
        return np.asarray(self._tensor(run, step, f"explorer/{name}"))


def _args(request, *names: str) -> list[str]:
    missing = [name for name in names if name not in request.args]
    if missing:
        raise errors.InvalidArgumentError(f"missing query argument(s): {', '.join(missing)}")
    return [request.args[name] for name in names]


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise errors.InvalidArgumentError(f"`{name}` must be an integer, got {text!r}") from None


class GatesPlugin(base_plugin.TBPlugin):
    """TensorBoard's "Gates" tab (LSTMVis-style explorer of gates, memory and units).

    Routes under `/data/plugin/kgates/`: `index.js` (the front end), `runs`
    (`{run: [steps]}`), `meta?run&step`, `array?run&step&name` (raw bytes:
    uint8 for `valid`, float16 otherwise), and
    `matches?run&step&layer&key&sequence&start&end&threshold` (select -> match
    computed on the server, as `kgates.find_matches`).
    """

    plugin_name = PLUGIN_NAME

    def __init__(self, context):
        self._provider = context.data_provider

    def _store(self, request) -> RecordStore:
        return RecordStore(
            self._provider,
            plugin_util.experiment_id(request.environ),
            plugin_util.context(request.environ),
        )

    def get_plugin_apps(self):
        return {
            "/index.js": self._serve_js,
            "/runs": self._serve_runs,
            "/meta": self._serve_meta,
            "/array": self._serve_array,
            "/matches": self._serve_matches,
        }

    def is_active(self) -> bool:
        return False  # active when a run has data for `data_plugin_names`

    def data_plugin_names(self):
        return (PLUGIN_NAME,)

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Gates")

    @wrappers.Request.application
    def _serve_js(self, request):
        return http_util.Respond(request, front_end(), "application/javascript")

    @wrappers.Request.application
    def _serve_runs(self, request):
        return http_util.Respond(request, self._store(request).runs(), "application/json")

    @wrappers.Request.application
    def _serve_meta(self, request):
        run, step = _args(request, "run", "step")
        meta = self._store(request).meta(run, _int(step, "step"))
        return http_util.Respond(request, meta, "application/json")

    @wrappers.Request.application
    def _serve_array(self, request):
        run, step, name = _args(request, "run", "step", "name")
        array = self._store(request).array(run, _int(step, "step"), name)
        return http_util.Respond(
            request, np.ascontiguousarray(array).tobytes(), "application/octet-stream"
        )

    @wrappers.Request.application
    def _serve_matches(self, request):
        run, step, layer, key = _args(request, "run", "step", "layer", "key")
        sequence, start, end = (
            _int(v, k)
            for k, v in zip(
                ("sequence", "start", "end"), _args(request, "sequence", "start", "end")
            )
        )
        (threshold,) = _args(request, "threshold")
        try:
            threshold = float(threshold)
        except ValueError:
            raise errors.InvalidArgumentError(
                f"`threshold` must be a number, got {threshold!r}"
            ) from None
        store = self._store(request)
        step = _int(step, "step")
        values = store.array(run, step, f"{layer}/{key}").astype(np.float64)
        valid = store.array(run, step, "valid").astype(bool)
        if not (0 <= sequence < values.shape[0] and 0 <= start <= end < values.shape[1]):
            raise errors.InvalidArgumentError(
                f"`sequence`, `start`, `end` must lie in (0..{values.shape[0] - 1}, "
                f"0..{values.shape[1] - 1}) with start <= end"
            )
        units = pattern_units(values, sequence, start, end, threshold)
        found = find_matches(
            values, valid, units, threshold, end - start + 1, exclude=(sequence, start, end)
        )
        return http_util.Respond(
            request, {"units": units.tolist(), "matches": found}, "application/json"
        )


# ---------------------------------------------------------------- one HTML file
def logdir_store(logdir: str) -> RecordStore:
    """The explorer records of every run under `logdir`, read as TensorBoard reads them."""
    from tensorboard.backend.event_processing import data_provider as tb_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={PLUGIN_NAME: 0}  # 0: keep every record
    )
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    return RecordStore(tb_provider.MultiplexerDataProvider(multiplexer, logdir))


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def payload_of(records: dict) -> dict:
    """The embedded data of an HTML explorer: `records` is `{run: {step: (meta, arrays)}}`."""
    payload = {"runs": {}, "records": {}}
    for run, steps in records.items():
        payload["runs"][run] = sorted(steps)
        for step, (meta, arrays) in steps.items():
            payload["records"][f"{run}\n{step}"] = {
                "meta": meta,
                "arrays": {name: _encode(array) for name, array in arrays.items()},
            }
    return payload


def store_records(store: RecordStore, last_only: bool = False) -> dict:
    records = {}
    for run, steps in store.runs().items():
        records[run] = {}
        for step in steps[-1:] if last_only else steps:
            meta = store.meta(run, step)
            names = ["valid"] + [f"{la['name']}/{k}" for la in meta["layers"] for k in la["keys"]]
            if meta.get("features"):
                names.append("inputs")
            records[run][step] = (meta, {name: store.array(run, step, name) for name in names})
    return records


def explorer_html(records: dict, title: str = "kgates: gates") -> str:
    """One self-contained HTML page (the explorer and its data; no network)."""
    data = json.dumps(finite_json(payload_of(records)), allow_nan=False).replace("</", "<\\/")
    script = front_end().replace("</script", "<\\/script")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>\n<body>\n"
        f'<script type="application/json" id="kgates-data">{data}</script>\n'
        f'<script type="module">\n{script}\n'
        "mount(document.body, embeddedSource(JSON.parse("
        "document.getElementById('kgates-data').textContent)));\n"
        "</script>\n</body></html>\n"
    )


def explore(logdir: str, out: str, last_only: bool = False) -> tuple[str, int]:
    """Writes the explorer of every run under `logdir` to `out`; returns (out, runs)."""
    if not os.path.isdir(logdir):
        raise ValueError(f"no such directory: {logdir}")
    records = store_records(logdir_store(logdir), last_only)
    if not records:
        raise ValueError(
            f"no explorer data under {logdir}: kgates.TensorBoard writes it every "
            "`explorer_freq` dashboards, `kgates inspect` once"
        )
    text = explorer_html(records, f"kgates: {os.path.basename(os.path.abspath(logdir))}")
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, out)
    return out, len(records)


class Explorer:
    """The gate explorer of one traced batch, as a self-contained HTML page.

    Shown inline in a notebook (Jupyter displays `_repr_html_`); `save(path)`
    writes the page, which opens offline in any browser.
    """

    def __init__(self, page: str, height: int = 760):
        self.html = page
        self.height = height

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
            f'style="width:100%;height:{self.height}px;border:1px solid #ddd"></iframe>'
        )

    def save(self, path: str) -> str:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.html)
        return path


def show(
    model,
    x,
    text=None,
    mask=None,
    layers=None,
    annotations: dict | None = None,
    sequences: int = SEQUENCES,
    steps: int = STEPS,
    units: int = UNITS,
) -> Explorer:
    """The gate explorer of `model` on `x` (the "Gates" tab, without TensorBoard).

    Args:
        model: a functional or Sequential Keras model built on `keras.Input`.
        x: a batch of input sequences.
        text: the tokens: a function from one input sequence to a list of strings
            (one per step), or a list of such lists. Default: none (the explorer
            draws the input features).
        mask: optional `(batch, time)` mask of real steps (see `kgates.trace`).
        layers: optional name or names of the recurrent layers. Default: all.
        annotations: optional `{name: (batch, time) array}`: ranks every unit
            against them (`kgates.find_units`) in the unit table.
        sequences, steps, units: bounds of what is shown (first sequences, first
            steps, first units of each layer). Default: 32, 200, 256.

    Returns:
        An `Explorer`: a notebook displays it inline; `.save("gates.html")`.

    Example:

    >>> kgates.show(model, x[:32], text=lambda seq: [chars[i] for i in seq])
    """

    from kgates.inspect._trace import Tracer

    tracer = Tracer(model, layers, compiled=False)
    traced = tracer(x, mask)
    first = np.asarray(tracer.walk.sequence_of(x))
    tokens = None
    if text is not None:
        try:
            tokens = tokens_of(text, first, sequences, steps)
        except ValueError as error:
            raise ValueError(f"kgates.show: {str(error).replace('probe_text', 'text')}") from None
    table = None
    if annotations:
        from kgates.inspect._stats import same_steps
        from kgates.inspect._units import rank_units

        table = units_rows(rank_units(same_steps(traced)[0], annotations))
    backwards = {p.name: p.layer.go_backwards for p in tracer.parts}
    meta, arrays = explorer_record(traced, backwards, first, tokens, table, sequences, steps, units)
    return Explorer(explorer_html({"kgates.show": {0: (meta, arrays)}}))
