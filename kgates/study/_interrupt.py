"""Ctrl-C during a trial stops it at the next batch's end, in Python.

A KeyboardInterrupt raised while TensorFlow runs an op (a `tf.data` iterator being
made at an epoch's start, say) can corrupt its heap: the process aborts with
"free(): invalid next size" and no message, instead of saying how to resume. While a
trial runs, the first Ctrl-C is noted and raised from a callback at the next batch's
end; a second one raises at once, as Python's own handler does.
"""

from __future__ import annotations

import signal
import threading

import keras


class DeferredInterrupt(keras.callbacks.Callback):
    """A context for a trial's work and a callback for its fits: Ctrl-C is raised
    at the next batch's or epoch's end, or when the context ends.

    Only where Ctrl-C would raise KeyboardInterrupt now (the main thread, with
    Python's default handler): a shell that ignores SIGINT keeps ignoring it.
    """

    def __init__(self):
        super().__init__()
        self.requested = False
        self._previous = None

    def __deepcopy__(self, memo):  # Keras Tuner copies the callbacks of every fit
        return self

    def __enter__(self) -> DeferredInterrupt:
        self.requested = False
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._note)
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        if kind is None:
            self._raise_if_requested()

    def _note(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C: now
            raise KeyboardInterrupt
        self.requested = True

    def _raise_if_requested(self, *args, **kwargs) -> None:
        if self.requested:
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_predict_batch_end = _raise_if_requested
    on_epoch_end = _raise_if_requested
