"""Writing TensorBoard summaries with NumPy and the tensorboard package.

No TensorFlow needed: histograms are bucketed on the host with NumPy (memory
stays that of the values themselves), and events go through tensorboard's own
event file writer, so logging works on every Keras backend.
"""

from __future__ import annotations

import contextlib
import io
import os
import time

import keras
import numpy as np
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter


def _to_numpy(value) -> np.ndarray:
    """A Python number, array, backend tensor or Keras variable as NumPy."""
    return np.asarray(keras.ops.convert_to_numpy(value))


def histogram_proto(values, bins: int = 30) -> HistogramProto:
    """A TensorBoard histogram of the finite entries of `values`, bucketed by NumPy."""
    values = np.asarray(values, np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return HistogramProto(num=0)
    low, high = _range(float(values.min()), float(values.max()))
    counts, _ = np.histogram(values, bins=bins, range=(low, high))
    return counted_histogram_proto(
        values.size, values.sum(), np.dot(values, values), values.min(), values.max(), counts
    )


def _range(low: float, high: float) -> tuple[float, float]:
    return (low - 0.5, high + 0.5) if low == high else (low, high)  # a constant: a pinned gate


def counted_histogram_proto(num, sum, sum_squares, min, max, counts) -> HistogramProto:  # noqa: A002
    """A TensorBoard histogram from its numbers, bucketed already (equal widths from
    `min` to `max`, as `histogram_proto`; e.g. counted on the device)."""
    if num == 0:
        return HistogramProto(num=0)
    low, high = _range(float(min), float(max))
    edges = np.linspace(low, high, len(counts) + 1)
    return HistogramProto(
        min=float(min),
        max=float(max),
        num=float(num),
        sum=float(sum),
        sum_squares=float(sum_squares),
        bucket_limit=edges[1:].tolist(),
        bucket=np.asarray(counts, np.float64).tolist(),
    )


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an (H, W), (H, W, 3) or (H, W, 4) array in [0, 1] or uint8."""
    import matplotlib.image

    buffer = io.BytesIO()
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0.0, 1.0)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    matplotlib.image.imsave(buffer, image, format="png", cmap="gray" if image.ndim == 2 else None)
    return buffer.getvalue()


class EventWriter:
    """Scalars, histograms and images into one TensorBoard run directory."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        self.logdir = logdir
        self._writer = EventFileWriter(logdir)

    def _add(self, value: Summary.Value, step: int) -> None:
        self.summary(Summary(value=[value]), step)

    def summary(self, summary: Summary, step: int) -> None:
        """Writes a ready-made summary, e.g. an HParams plugin session."""
        self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._add(Summary.Value(tag=tag, simple_value=float(value)), step)

    def histogram(self, tag: str, values, step: int, bins: int = 30) -> None:
        self._add(Summary.Value(tag=tag, histo=histogram_proto(values, bins)), step)

    def counted_histogram(self, tag: str, numbers: dict, step: int) -> None:
        """A histogram bucketed already: `numbers` as `kgates`'s device summaries give it
        (num, sum, sum_squares, min, max, counts)."""
        keys = ("num", "sum", "sum_squares", "min", "max", "counts")
        proto = counted_histogram_proto(**{k: numbers[k] for k in keys})
        self._add(Summary.Value(tag=tag, histo=proto), step)

    def image(self, tag: str, png: bytes, height: int, width: int, step: int) -> None:
        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
        self._add(Summary.Value(tag=tag, image=image), step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class NumpySummary:
    """The part of `tf.summary` that `keras.callbacks.TensorBoard` uses.

    Stands in for TensorFlow when it is not installed (JAX or torch backends),
    so the Keras callback's own logs (epoch metrics, weight histograms) still
    reach TensorBoard.
    """

    def __init__(self):
        self._default = None
        self._step = None
        self._condition = True  # `record_if`'s

    def create_file_writer(self, logdir: str) -> _DefaultWriter:
        return _DefaultWriter(self, EventWriter(logdir))

    def _target(self, step):
        if self._default is None or not self._recording():
            return None, None
        step = self._step if step is None else step
        return self._default, int(_to_numpy(step)) if step is not None else 0

    def scalar(self, name, data, step=None, description=None):
        writer, step = self._target(step)
        if writer is not None:
            writer.scalar(name, float(_to_numpy(data)), step)

    def histogram(self, name, data, step=None, buckets=None, description=None):
        writer, step = self._target(step)
        if writer is not None:
            writer.histogram(name, _to_numpy(data), step, bins=buckets or 30)

    def image(self, name, data, step=None, max_outputs=3, description=None):
        writer, step = self._target(step)
        if writer is None:
            return
        images = _to_numpy(data)
        for k, image in enumerate(images[:max_outputs]):
            low, high = float(image.min()), float(image.max())
            image = (image - low) / (high - low) if high > low else np.zeros_like(image)
            tag = name if k == 0 else f"{name}/{k}"
            writer.image(tag, png_bytes(image), image.shape[0], image.shape[1], step)

    def _recording(self) -> bool:
        """Whether `record_if`'s condition holds now (Keras's `update_freq`)."""
        condition = self._condition
        if callable(condition):
            condition = condition()
        return bool(_to_numpy(condition))

    @contextlib.contextmanager
    def record_if(self, condition):
        previous, self._condition = self._condition, condition
        try:
            yield
        finally:
            self._condition = previous

    def graph(self, *args, **kwargs):
        pass

    def trace_on(self, *args, **kwargs):
        pass

    def trace_export(self, *args, **kwargs):
        pass


class _DefaultWriter:
    def __init__(self, summary: NumpySummary, writer: EventWriter):
        self._summary = summary
        self.writer = writer

    @contextlib.contextmanager
    def as_default(self, step=None):
        previous = self._summary._default, self._summary._step
        self._summary._default, self._summary._step = self.writer, step
        try:
            yield self
        finally:
            self._summary._default, self._summary._step = previous

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()
