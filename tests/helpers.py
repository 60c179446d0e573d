"""What several test modules share: the tolerance, padded batches, event files,
pairwise coverings."""

import os

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ATOL = 1e-5  # float32 against float64 references and Keras's own layers


def padded(rng, batch=4, time=9, features=3, lengths=(None, 5, 2, 7)):
    """A batch of sequences of the given `lengths` (None: `time`), zeros after them,
    and its `(batch, time)` mask."""
    x = rng.normal(size=(batch, time, features)).astype("float32")
    lengths = np.array([time if n is None else n for n in lengths])[:batch]
    mask = np.arange(time)[None, :] < lengths[:, None]
    return x * mask[..., None], mask


def read_events(logdir: str, *parts: str) -> EventAccumulator:
    """Every event under `logdir/parts...`, loaded in full."""
    kinds = ("histograms", "scalars", "images", "tensors")
    accumulator = EventAccumulator(os.path.join(logdir, *parts), {k: 0 for k in kinds})
    accumulator.Reload()
    return accumulator


def pairwise(cases: dict) -> list:
    """pytest params for each of `cases` (a name: a tuple of arguments) with two
    settings of two boolean options, alternating between the cases, so that
    together every pair of (case, option, option) meets: a pairwise covering of
    the full product at half its size."""
    settings = [((False, True), (True, False)), ((False, False), (True, True))]
    return [
        pytest.param(*arguments, a, b, id=f"{name}-{a}-{b}")
        for k, (name, arguments) in enumerate(cases.items())
        for a, b in settings[k % 2]
    ]


def encoder_decoder(units=4, steps=(5, 3), features=(3, 2), head=None):
    """An LSTM encoder whose final states start an LSTM decoder (Keras's seq2seq
    pattern), with an optional Dense `head` on the decoder's sequence."""
    import keras

    source = keras.Input((steps[0], features[0]), name="source")
    target = keras.Input((steps[1], features[1]), name="target")
    _, h, c = keras.layers.LSTM(units, return_state=True, name="encoder")(source)
    out = keras.layers.LSTM(units, return_sequences=True, name="decoder")(
        target, initial_state=[h, c]
    )
    if head is not None:
        out = keras.layers.Dense(head, name="head")(out)
    return keras.Model([source, target], out)
