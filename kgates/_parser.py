"""The `kgates` command line: its options, their checks and help. It reads only plain
tables (no Keras), so that parsing, and `--help`, take no time."""

from __future__ import annotations

import argparse
import re


class _Parser(argparse.ArgumentParser):
    """Errors in one line, naming the argument (exit code 2); `--help` shows usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return int(text)


def _directory(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a directory, got an empty string")
    return text


def _worker_id(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError(
            f"expected letters, digits and . _ - (a name, not a path), got {text!r}"
        )
    if text.startswith("chief"):  # Keras Tuner takes such a worker for the chief
        raise argparse.ArgumentTypeError(f"a worker's id must not start with 'chief', got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command line; it reads only plain tables, so parsing loads no Keras."""
    from kgates.study._choices import CELLS, DEMO

    parser = _Parser(
        prog="kgates", description="Recurrent cells for Keras 3 that show their gates."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train a small model on the adding problem and print what its gates did",
    )
    demo.add_argument("--cell", default="NP", choices=CELLS, help="cell code (default: NP)")
    for flag, default, meaning in [
        ("--units", DEMO["units"], "units of the recurrent layer"),
        ("--length", DEMO["length"], "steps per sequence"),
        ("--samples", DEMO["samples"], "training sequences"),
        ("--epochs", DEMO["epochs"], "training epochs"),
    ]:
        demo.add_argument(flag, type=_positive_int, default=default, help=f"{meaning} ({default})")
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")

    _add_tune(commands)
    report = commands.add_parser(
        "report", help="write a markdown + PNG summary of the search in DIRECTORY"
    )
    report.add_argument("directory", help="a search directory (made by kgates tune)")

    inspect = commands.add_parser(
        "inspect",
        help="look inside a saved model: gate and memory dashboards, a summary, and "
        "with --labels which units matter",
    )
    inspect.add_argument("model", help="a saved Keras model (.keras)")
    inspect.add_argument("data", help="a .npy array of inputs shaped like the model's input")
    inspect.add_argument("--out", required=True, type=_directory, help="directory to write")
    inspect.add_argument(
        "--mask-value", type=float, help="steps whose features all equal it are padding"
    )
    inspect.add_argument("--labels", help="a .npy array of targets: adds the ablation per unit")
    inspect.add_argument(
        "--limit", type=_positive_int, default=256, help="sequences used, at most (256)"
    )

    explore = commands.add_parser(
        "explore",
        help="write the Gates tab of LOGDIR's runs as one HTML file that opens offline",
    )
    explore.add_argument("logdir", help="a run directory, or a directory of runs")
    explore.add_argument("-o", "--out", required=True, help="the HTML file to write")
    explore.add_argument(
        "--last", action="store_true", help="only each run's last record (a smaller file)"
    )

    board = commands.add_parser(
        "board", help="start TensorBoard on 127.0.0.1 with the gate dashboards of LOGDIR"
    )
    board.add_argument("logdir", help="a run directory, or a directory of runs")
    board.add_argument("--port", type=_port, default=6006, help="port (6006; 0 picks a free one)")
    return parser


def _list(kind):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v.strip()) for v in text.split(","))
        except ValueError:
            what = {int: "integers", float: "numbers"}.get(kind, "values")
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {what}, got {text!r}"
            ) from None

    return parse


def _range(text: str) -> tuple:
    try:
        return tuple(float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a value or LOW:HIGH, got {text!r}") from None


def _bools(text: str) -> tuple:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    values = [words.get(v.strip().lower()) for v in text.split(",")]
    if None in values:
        raise argparse.ArgumentTypeError(f"expected true, false or true,false, got {text!r}")
    return tuple(values)


def _address(text: str) -> tuple[str, str]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT with a port from 1 to 65535, got {text!r}"
        )
    return host, port


# Flags of `kgates tune` that define the search, as keys of its spec.
SIZE_FLAGS = {
    "samples": "training sequences",
    "length": "steps per sequence",
    "delay": "steps from the last symbol to the recall marker",
    "symbols": "symbols to recall",
    "chorales": "chorales used, of the corpus's fixed order",
}
SPACE_FLAGS = {
    "units": (_list(int), "units per recurrent layer"),
    "layers": (_list(int), "recurrent layers"),
    "learning_rate": (_range, "Adam's learning rate, drawn on a log scale"),
    "dropout": (_range, "dropout on each recurrent layer's inputs"),
    "forget_bias": (_list(str), "LSTM forget bias: zero, one (Keras's) or chrono"),
    "clipnorm": (_list(float), "Adam's gradient clipping norm; 0: none"),
    "reset_after": (_bools, "GRU: reset gate after the matrix product (Keras's default)"),
}


def _add_tune(commands) -> None:
    from kgates.study._choices import ABOUT_CELLS, RANGES, SPACE
    from kgates.study._directory import DEFAULTS, TUNER_NAMES
    from kgates.study._own_data import DATA_EPOCHS, DATA_OBJECTIVES
    from kgates.study._tasks import ABOUT, EPOCHS, TASKS, task_sizes

    cells = "\n".join(f"  {code:<5} {about}" for code, about in ABOUT_CELLS.items())
    tasks = "\n".join(f"  {name:<7} {about}" for name, about in ABOUT.items())
    tune = commands.add_parser(
        "tune",
        help="search cells and hyperparameters with Keras Tuner, with gate dashboards per trial",
        description="Runs a Keras Tuner search over kgates cells on a task. Running the same\n"
        "command again on the same --directory resumes it (options left out are read\n"
        "from the directory).",
        epilog=f"cells:\n{cells}\n\ntasks:\n{tasks}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = tune.add_mutually_exclusive_group()
    what.add_argument("--task", choices=tuple(TASKS), help=f"task (default: {DEFAULTS['task']})")
    what.add_argument(
        "--data",
        metavar="FILE.npz",
        help="your own data in place of a task: arrays x_train, y_train, x_val, y_val "
        "(integer y: classes, float y: values; see the README)",
    )
    tune.add_argument(
        "--objective",
        choices=DATA_OBJECTIVES,
        help="with --data: what to optimise (default: the file's objective array, else "
        "val_accuracy for classes, val_loss for values)",
    )
    tune.add_argument(
        "--cells",
        type=_list(str),
        help=f"comma-separated cell codes, listed below (default: {','.join(DEFAULTS['cells'])})",
    )
    tune.add_argument(
        "--tuner",
        choices=TUNER_NAMES,
        help="search algorithm; paired: every cell on the same configurations (a Sobol "
        f"sequence) and weight seeds, compared pair by pair (default: {DEFAULTS['tuner']})",
    )
    tune.add_argument(
        "--margin",
        type=_positive_float,
        help="non-inferiority margin in the objective's units, fixed with the search: the "
        "report of a paired search says which cells are no worse than V by it (default: none)",
    )
    tune.add_argument(
        "--max-trials",
        type=_positive_int,
        help=f"trials in all (default: {DEFAULTS['max_trials']})",
    )
    per_task = ", ".join(f"{name} {n}" for name, n in {**EPOCHS, "data": DATA_EPOCHS}.items())
    tune.add_argument(
        "--epochs", type=_positive_int, help=f"most epochs per trial (default: {per_task})"
    )
    tune.add_argument(
        "--seed", type=int, help=f"seed of data, tuner and weights (default: {DEFAULTS['seed']})"
    )
    tune.add_argument(
        "--directory",
        type=_directory,
        help="where the search lives (default: runs/TASK, or runs/FILE for --data); "
        "same again resumes",
    )
    sizes = tune.add_argument_group("task sizes (defaults by task)")
    for flag, meaning in SIZE_FLAGS.items():
        by_task = {name: task_sizes(name) for name in TASKS}
        defaults = ", ".join(f"{t} {s[flag]}" for t, s in by_task.items() if flag in s)
        sizes.add_argument(f"--{flag}", type=_positive_int, help=f"{meaning} ({defaults})")
    space = tune.add_argument_group(
        "search space: a comma-separated list of choices (one value fixes it); learning "
        "rate and dropout: a value or LOW:HIGH"
    )
    for name, (kind, meaning) in SPACE_FLAGS.items():
        default = (":" if name in RANGES else ",").join(str(v) for v in SPACE[name])
        flag = f"--{name.replace('_', '-')}"
        space.add_argument(flag, type=kind, help=f"{meaning} (default: {default})")
    tune.add_argument(
        "--gate-freq",
        type=_non_negative_int,
        default=1,
        help="epochs between gate dashboards; 0: off (1)",
    )
    tune.add_argument("--patience", type=_positive_int, default=3, help="early stopping (3)")
    tune.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=None, help="Keras fit verbosity (auto)"
    )
    where = tune.add_mutually_exclusive_group()
    where.add_argument(
        "--chief", type=_address, metavar="HOST:PORT", help="serve the search's oracle here"
    )
    where.add_argument(
        "--worker", type=_address, metavar="HOST:PORT", help="run trials for the chief at HOST:PORT"
    )
    tune.add_argument(
        "--worker-id", type=_worker_id, help="this worker's name (default: worker-HOST-PID)"
    )
