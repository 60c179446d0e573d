"""`kgates.TensorBoard`: Keras's TensorBoard callback plus gate dashboards."""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import keras

from kgates.cells._backend import tensorflow_summary
from kgates.inspect._dashboards import (
    draw,
    write_gate_summaries,
    write_gradient_flow,
    write_memory_summaries,
)
from kgates.inspect._events import EventWriter, NumpySummary
from kgates.inspect._explorer import (
    SEQUENCES,
    STEPS,
    UNITS,
    explorer_record,
    probe_notes,
    record_summary,
    units_rows,
)
from kgates.inspect._gradflow import GradientFlow
from kgates.inspect._probe import check_probe, subsample
from kgates.inspect._stats import same_steps
from kgates.inspect._trace import Tracer
from kgates.inspect._units import rank_units


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback that also shows what every gate does.

    Every argument and behaviour of `keras.callbacks.TensorBoard` is kept.
    Every `gate_freq` epochs the callback traces the probe batch through the
    model (`kgates.trace`) and writes into the run's `train` directory
    (images every `image_freq`-th time):

    - histograms `gates/{layer}/{gate}` of every gate, `c` and `h`;
    - scalars `gate_mean/{layer}/{gate}`, `saturation/{layer}/{gate}/left|right`
      (shares < 0.1 and > 0.9), `forget_closed/{layer}` (share of units whose
      forget gate is closed 90% of the time), `nonfinite/{layer}`;
    - images `cell_state/{layer}` (units x time heatmap of the first probe
      sample), `gate_heatmap/{layer}/{gate}`, `cell_trace/{layer}` (c_t of the
      most active units), `saturation_scatter/{layer}`;
    - memory (LSTM, GRU; `kgates.memory`): histogram `memory_span/{layer}` of
      every unit's memory span (mean age in steps of what its state holds) at
      every real step, scalar `memory_span_median/{layer}`, and image
      `memory_attention/{layer}` (steps x steps: the share of the state at step
      t written at step s, first probe sequence);
    - gradient flow: image `gradient_flow/{layer}` (||dL/dh_t||, ||dL/dc_t||
      against t) and scalars `gradient_flow/{layer}/reach_h|reach_c`, the
      unbroken run of steps back from the last over which the gradient stays
      at >= 1% of its peak so far (`kgates.reach`).

    The numbers are computed where the model runs (`keras.ops`; only they and
    the first probe sequence come to the host) and written with the
    tensorboard package: this works on every backend, and without TensorFlow
    (Keras's own logs then go through the same writer).

    Args:
        log_dir: where to write the run. Default: `"logs"`.
        probe: a batch of model inputs to trace, or `(x, y)`; with targets, the
            gradient flow is that of the model's loss (else of half the
            squared outputs). Required.
        gate_freq: epochs between gate dashboards; 0 turns them off.
            Default: 1.
        layers: name or names of the recurrent layers to show. Default: all.
        probe_mask: optional `(batch, time)` mask of the probe (default: the
            model's own mask, from `Masking` or `Embedding(mask_zero=True)`).
        max_probe: the probe is subsampled (evenly) to at most this many
            sequences. Default: 256.
        image_freq: every how many gate dashboards also draw the images (about
            0.8 s of drawing per layer, off the training thread); 0 for none.
            Default: 10 (with `gate_freq=1`: epochs 0, 10, 20, ...).
        gradients: write the gradient flow. Default: True.
        explorer_freq: every how many gate dashboards also write the explorer's
            data (the "Gates" tab, `kgates explore`; the last epoch trained
            always gets it); 0 for none. Default: 10.
        probe_text: the probe's tokens for the explorer: a function from one
            probe sequence (its row of the input the first traced layer reads)
            to a list of strings, one per step, or a list of such lists.
            Default: none (the explorer draws the input features).
        annotations: optional `{name: (batch, time) array}` of the probe (e.g.
            bracket depth): the explorer's unit table ranks every unit against
            them (`kgates.find_units`).
        explorer_sequences, explorer_steps, explorer_units: bounds of the
            explorer's data, float16: the first sequences of the probe, their
            first steps, and the first units of each layer. Defaults: 32, 200,
            256 (an LSTM of 64 units: 4.9 MB per record).
        **kwargs: any argument of `keras.callbacks.TensorBoard`.

    Example:

    >>> model.fit(x, y, epochs=20, callbacks=[
    ...     kgates.TensorBoard("runs/exp1", probe=x[:64])])
    """

    _RUNTIME = (
        "_model",
        "_tracer",
        "_flow",
        "_gate_writer",
        "_writers",
        "_prev_summary_state",
        "_summary_module",
        "_painter",
        "_pending",
    )

    def __init__(
        self,
        log_dir: str = "logs",
        probe=None,
        gate_freq: int = 1,
        layers: str | list[str] | None = None,
        probe_mask=None,
        max_probe: int = 256,
        image_freq: int = 10,
        gradients: bool = True,
        explorer_freq: int = 10,
        probe_text=None,
        annotations: dict | None = None,
        explorer_sequences: int = SEQUENCES,
        explorer_steps: int = STEPS,
        explorer_units: int = UNITS,
        **kwargs,
    ):
        super().__init__(log_dir=log_dir, **kwargs)
        for name, value, low in [
            ("gate_freq", gate_freq, 0),
            ("image_freq", image_freq, 0),
            ("max_probe", max_probe, 1),
            ("explorer_freq", explorer_freq, 0),
            ("explorer_sequences", explorer_sequences, 1),
            ("explorer_steps", explorer_steps, 1),
            ("explorer_units", explorer_units, 1),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(
                    f"kgates.TensorBoard: `{name}` must be an integer >= {low}, got {value!r}."
                )
        if probe is None and gate_freq:
            raise ValueError(
                "kgates.TensorBoard: argument `probe` is required: a batch of model "
                "inputs, or (x, y), whose gates the dashboards show."
            )
        x, y = probe if isinstance(probe, tuple) and len(probe) == 2 else (probe, None)
        self.gate_freq = gate_freq
        self.layers = layers
        self.image_freq = image_freq
        self.gradients = gradients
        self.max_probe = max_probe
        self.explorer_freq = explorer_freq
        self.explorer_bounds = (explorer_sequences, explorer_steps, explorer_units)
        self.probe_x, self.probe_y, self.probe_mask, keep = subsample(x, y, probe_mask, max_probe)
        inputs = [] if self.probe_x is None else keras.tree.flatten(self.probe_x)
        # checked now for one input; for several, once the model says which is the sequence
        self._notes = partial(
            probe_notes,
            probe_text,
            annotations,
            keep=keep,
            sequences=explorer_sequences,
            steps=explorer_steps,
        )
        self.probe_sequence = inputs[0] if len(inputs) == 1 else None
        self.probe_tokens, self.annotations = self._notes(first=self.probe_sequence)
        self._tracer = None
        self._flow = None
        self._gate_writer = None
        self._painter = None  # draws the images off the training thread
        self._pending = []
        self._epochs = {"last": None, "dashboard": None, "images": None, "explorer": None}
        self._pinned = {}  # {layer: pinned gate names}
        self._backwards = {}  # {layer: reads the input from its end}
        self.gate_stats = {}  # the latest dashboard's scalars: {layer: {gate: {...}}}

    @property
    def summary(self):
        if self._summary_module is None:
            self._summary_module = tensorflow_summary() or NumpySummary()
        return self._summary_module

    def _write_keras_model_summary(self):
        if not isinstance(self.summary, NumpySummary):
            super()._write_keras_model_summary()

    def _write_keras_model_train_graph(self):
        if not isinstance(self.summary, NumpySummary):
            super()._write_keras_model_train_graph()

    def __deepcopy__(self, memo):
        # Keras Tuner copies callbacks per trial: copy the settings and the
        # probe; the model, writers and tracer are made afresh in set_model.
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            clone.__dict__[key] = None if key in self._RUNTIME else copy.deepcopy(value, memo)
        clone._writers = {}
        clone._prev_summary_state = []
        clone._pending = []
        return clone

    def set_model(self, model):
        super().set_model(model)
        self.gate_stats = {}
        self._gate_writer = None
        self._tracer = None
        self._epochs = {"last": None, "dashboard": None, "images": None, "explorer": None}
        if self.gate_freq:
            check_probe(model, self.probe_x)
            self._tracer = Tracer(model, self.layers)
            # pinned gates are constants: no pictures of them
            self._pinned = {p.name: set(getattr(p.cell, "pin", ())) for p in self._tracer.parts}
            self._backwards = {p.name: p.layer.go_backwards for p in self._tracer.parts}
            if self.probe_sequence is None:
                self.probe_sequence = self._tracer.walk.sequence_of(self.probe_x)
                self.probe_tokens, self.annotations = self._notes(first=self.probe_sequence)
            self.probe_mask = self._tracer.walk.check_mask(
                self.probe_mask, self.probe_x, "kgates.TensorBoard", "probe_mask"
            )
            self._flow = GradientFlow(model, walk=self._tracer.walk) if self.gradients else None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._tracer is not None:  # fail now rather than at the first dashboard
            self._tracer(keras.tree.map_structure(lambda a: a[:2], self.probe_x))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self._epochs["last"] = epoch
        if self.gate_freq and epoch % self.gate_freq == 0:
            dashboard = epoch // self.gate_freq
            self.log_gates(
                epoch,
                images=bool(self.image_freq) and dashboard % self.image_freq == 0,
                explorer=bool(self.explorer_freq) and dashboard % self.explorer_freq == 0,
            )

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        last = self._epochs["last"]
        if self.gate_freq and last is not None:
            # the images, explorer and dashboard of the last epoch trained (early stopping or not)
            images = bool(self.image_freq) and self._epochs["images"] != last
            explorer = bool(self.explorer_freq) and self._epochs["explorer"] != last
            if images or explorer:
                self.log_gates(
                    last,
                    images=images,
                    summaries=self._epochs["dashboard"] != last,
                    explorer=explorer,
                )
        self.wait()
        if self._painter is not None:
            self._painter.shutdown()
            self._painter = None
        if self._gate_writer is not None:
            self._gate_writer.close()
            self._gate_writer = None

    def wait(self) -> None:
        """Blocks until every image drawn so far is written."""
        pending, self._pending = self._pending or [], []
        for future in pending:
            future.result()  # re-raises a drawing error here
        if self._gate_writer is not None:
            self._gate_writer.flush()

    def explorer_summary(self):
        """The explorer record (plugin `kgates`): the probe's first sequences traced (all
        of it for the unit table of `annotations`)."""
        n = None if self.annotations else self.explorer_bounds[0]
        mask = None if self.probe_mask is None else self.probe_mask[:n]
        traced = self._tracer(keras.tree.map_structure(lambda a: a[:n], self.probe_x), mask)
        table = None
        if self.annotations:  # of the layers along the first one's sequence, as the tab
            table = units_rows(rank_units(same_steps(traced)[0], self.annotations))
        meta, arrays = explorer_record(
            traced,
            self._backwards,
            self.probe_sequence,
            self.probe_tokens,
            table,
            *self.explorer_bounds,
        )
        return record_summary(meta, arrays)

    @property
    def gate_writer(self) -> EventWriter:
        if self._gate_writer is None:
            self._gate_writer = EventWriter(os.path.join(self.log_dir, "train"))
        return self._gate_writer

    def log_gates(
        self, step: int, images: bool = True, summaries: bool = True, explorer: bool = False
    ) -> None:
        """Traces the probe and writes the gate dashboards (images and the explorer's
        data too) at `step`."""
        numbers = self._tracer.summaries(self.probe_x, self.probe_mask)  # on the device
        flows = {}
        if self._flow is not None:
            flows = self._flow(self.probe_x, self.probe_y, self.probe_mask)
        writer = self.gate_writer
        if summaries:
            self._epochs["dashboard"] = step
            for part, summary in numbers.items():
                self.gate_stats[part] = write_gate_summaries(writer, part, summary, step)
                span = write_memory_summaries(writer, part, summary, step)
                if span is not None:
                    self.gate_stats[part]["memory_span"] = span
                if part in flows:
                    write_gradient_flow(writer, part, flows[part], step)
            writer.flush()
        if explorer:
            self._epochs["explorer"] = step
            writer.summary(self.explorer_summary(), step)
            writer.flush()
        if images:
            self._epochs["images"] = step
            self._pending = [f for f in self._pending or [] if not f.done()]
            if self._painter is None:
                self._painter = ThreadPoolExecutor(1, thread_name_prefix="kgates-images")
            pictures = partial(draw, writer, numbers, flows, step, self._pinned, self._backwards)
            self._pending.append(self._painter.submit(pictures))
