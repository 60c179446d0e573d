"""The tasks a search runs: data (`_data`), output head, loss, objective, budget.
A user's own arrays make a task in `_own_data`."""

from __future__ import annotations

import dataclasses

import numpy as np

from kgates.study._code import VOCABULARY, code_corpus, code_windows
from kgates.study._data import adding_problem, check_size, copy_memory, digits
from kgates.study._music import CHORALES, KEYS, bach_chorales, corpus_about, key_baselines

# What each task's search optimises: a Keras log name and a direction.
OBJECTIVES = {
    "adding": ("val_loss", "min"),
    "copy": ("val_loss", "min"),
    "digits": ("val_accuracy", "max"),
    "code": ("val_loss", "min"),
    "music": ("val_loss", "min"),
}
EPOCHS = {"adding": 10, "copy": 10, "digits": 15, "code": 10, "music": 20}  # per trial, unless told
ABOUT = {  # one line each, for `kgates tune --help`
    "adding": "sum the two marked values of a sequence (regression; Hochreiter 1997)",
    "copy": "recall 10 symbols after a delay, scored at every step (Arjovsky 2016's layout)",
    "digits": "scikit-learn's 8x8 digits read row by row (classification)",
    "code": "next character of Python standard-library source (language model)",
    "music": "next chord of Bach chorales, 88 keys (music21's corpus; like Greff 2017's JSB)",
}


@dataclasses.dataclass
class Task:
    """A learning problem for `kgates tune`: data, output head, loss and score.

    Attributes:
        name: task name (a key of `TASKS`).
        sizes: the sizes it was made with (`samples`, `length`, `delay`, ...).
        x_train, y_train, x_val, y_val: the data.
        objective: the Keras log name the search optimises, e.g. `"val_loss"`.
        direction: `"min"` or `"max"`.
        epochs: default training budget per trial.
        baseline: the objective of a model that has learned nothing (always
            the mean, or a uniform guess), for reading scores.
        baselines: named scores of simple guesses, `baseline` among them (for the
            adding problem also the model that keeps only the recent marked value).
        timescale: the longest dependency in steps (for chrono initialisation).
        vocabulary: number of input classes for an `Embedding`, or 0 for
            real-valued inputs.
        outputs: output classes (0 for regression).
        sequence_output: whether the head reads every step (or the last `answer` steps).
        answer: with `sequence_output`, how many final steps are scored (0: all).
        targets: regression outputs per scored step (1 unless a user's data has more),
            or, with `multilabel`, labels per step.
        multilabel: whether `targets` binary labels per step are scored by their
            Bernoulli negative log-likelihood, summed over the labels (`key_nll`).
        x_test, y_test: a held-out test split, when the task has one (never used
            for selection).
        about: what the data is made of, per split (files or pieces, their size,
            and the SHA-256 of their list of names, which fixes the split).
    """

    name: str
    sizes: dict
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    objective: str
    direction: str
    epochs: int
    baseline: float
    timescale: int
    vocabulary: int = 0
    outputs: int = 0
    sequence_output: bool = False
    answer: int = 0
    baselines: dict = dataclasses.field(default_factory=dict)
    targets: int = 1
    multilabel: bool = False
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    about: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.baselines:
            self.baselines = {"learned nothing": self.baseline}

    @property
    def metric(self) -> str:
        return self.objective.removeprefix("val_")

    def head(self, h):
        """The output layers on top of the last recurrent layer's output `h`."""
        import keras  # loads with the first model: the task tables are read before

        if self.answer:
            h = keras.layers.Cropping1D((h.shape[1] - self.answer, 0), name="answer")(h)
        return keras.layers.Dense(self.outputs or self.targets, name="head")(h)

    def loss(self):
        import keras

        if self.outputs:
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        from kgates.study._hypermodel import key_nll

        return key_nll if self.multilabel else "mse"

    def metrics(self) -> list:
        return ["accuracy"] if self.objective.endswith("accuracy") else []


def _adding(seed: int, samples: int = 2000, length: int = 50) -> Task:
    x, y = adding_problem(samples, length, seed)
    x_val, y_val = adding_problem(max(1, samples // 4), length, seed + 1)
    x_test, y_test = adding_problem(max(1, samples // 4), length, seed + 1_000_003)
    baseline = float(np.mean((y_val - y.mean()) ** 2))
    # a model that keeps only the recent (second) marked value and adds the first's mean
    marked = x_val[..., 0] * x_val[..., 1]
    recent = marked[np.arange(len(marked)), len(marked[0]) - 1 - np.argmax(x_val[:, ::-1, 1], 1)]
    baselines = {
        "always the mean": baseline,
        "recent marked value + 0.5": float(np.mean((y_val[:, 0] - recent - 0.5) ** 2)),
    }
    return Task(
        "adding",
        {"samples": samples, "length": length},
        x,
        y,
        x_val,
        y_val,
        *OBJECTIVES["adding"],
        EPOCHS["adding"],
        baseline,
        timescale=length,
        baselines=baselines,
        x_test=x_test,
        y_test=y_test,
    )


def _copy(seed: int, samples: int = 2000, delay: int = 50, symbols: int = 10) -> Task:
    x, y = copy_memory(samples, delay, symbols, seed)
    x_val, y_val = copy_memory(max(1, samples // 4), delay, symbols, seed + 1)
    x_test, y_test = copy_memory(max(1, samples // 4), delay, symbols, seed + 1_000_003)
    sizes = {"samples": samples, "delay": delay, "symbols": symbols}
    baseline = symbols * np.log(8) / (delay + 2 * symbols)  # blanks, then uniform guesses
    return Task(
        "copy",
        sizes,
        x,
        y,
        x_val,
        y_val,
        *OBJECTIVES["copy"],
        EPOCHS["copy"],
        float(baseline),
        baselines={"blanks, then uniform guesses": float(baseline)},
        timescale=delay + 2 * symbols,
        outputs=10,
        sequence_output=True,
        x_test=x_test,
        y_test=y_test,
    )


def _digits(seed: int) -> Task:
    x, x_val, y, y_val = digits(seed)
    return Task(
        "digits",
        {},
        x,
        y,
        x_val,
        y_val,
        *OBJECTIVES["digits"],
        EPOCHS["digits"],
        0.1,
        baselines={"chance": 0.1},
        timescale=8,
        outputs=10,
    )


def bigram_loss(x_train, y_train, x_val, y_val) -> float:
    """Cross-entropy (nats) of next-character frequencies given the current character
    (add-one smoothing), counted on the training windows, scored on the validation ones."""
    counts = np.ones((VOCABULARY, VOCABULARY))
    np.add.at(counts, (x_train.ravel(), y_train.ravel()), 1.0)
    probabilities = counts / counts.sum(axis=1, keepdims=True)
    return float(-np.log(probabilities[x_val.ravel(), y_val.ravel()]).mean())


def _code(seed: int, samples: int = 2000, length: int = 100) -> Task:
    data = code_windows(samples, length, seed)
    (x, y), (x_val, y_val), (x_test, y_test) = data["train"], data["val"], data["test"]
    about = {
        part: {k: v for k, v in d.items() if k != "paths"} for part, d in code_corpus().items()
    }
    counts = np.bincount(y.ravel(), minlength=VOCABULARY) + 1.0
    baseline = float(-np.log(counts / counts.sum())[y_val].mean())  # unigram entropy
    bigram = bigram_loss(x, y, x_val, y_val)
    return Task(
        "code",
        {"samples": samples, "length": length},
        x,
        y,
        x_val,
        y_val,
        *OBJECTIVES["code"],
        EPOCHS["code"],
        baseline,
        baselines={"unigram frequencies": baseline, "bigram frequencies": bigram},
        timescale=length,
        vocabulary=VOCABULARY,
        outputs=VOCABULARY,
        sequence_output=True,
        x_test=x_test,
        y_test=y_test,
        about=about,
    )


def _music(seed: int, samples: int = 2000, length: int = 64, chorales: int = CHORALES) -> Task:
    data = bach_chorales(samples, length, seed, chorales)
    (x, y), (x_val, y_val), (x_test, y_test) = data["train"], data["val"], data["test"]
    baselines = key_baselines(y, x_val, y_val)
    return Task(
        "music",
        {"samples": samples, "length": length, "chorales": chorales},
        x,
        y,
        x_val,
        y_val,
        *OBJECTIVES["music"],
        EPOCHS["music"],
        baselines["key frequencies"],
        baselines=baselines,
        timescale=length,
        sequence_output=True,
        targets=KEYS,
        multilabel=True,
        x_test=x_test,
        y_test=y_test,
        about=corpus_about(chorales),
    )


TASKS = {"adding": _adding, "copy": _copy, "digits": _digits, "code": _code, "music": _music}


def task_sizes(name: str) -> dict:
    """The size options of a task and their defaults, e.g. `{"samples": 2000, "length": 50}`."""
    import inspect

    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}.")
    parameters = list(inspect.signature(TASKS[name]).parameters.values())[1:]
    return {p.name: p.default for p in parameters}


def make_task(name: str, seed: int = 0, **sizes) -> Task:
    """One of `TASKS` (`adding`, `copy`, `digits`, `code`, `music`), deterministic by
    `seed`.

    Args:
        name: the task.
        seed: seed of its data.
        **sizes: size options of the task (`task_sizes(name)`); others are an error.
    """
    known = task_sizes(name)
    unknown = sorted(set(sizes) - set(known))
    if unknown:
        expected = ", ".join(known) or "none"
        raise ValueError(f"task {name!r} has no size option {unknown[0]!r} (it has: {expected}).")
    for key, value in sizes.items():
        check_size(key, value, 1)
    return TASKS[name](seed, **sizes)
