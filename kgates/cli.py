"""The `kgates` command."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time


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
    return text


def build_parser() -> argparse.ArgumentParser:
    from kgates.study import _demo as demo_defaults

    parser = argparse.ArgumentParser(
        prog="kgates", description="Recurrent cells for Keras 3 that show their gates."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train a small model on the adding problem and print what its gates did",
    )
    demo.add_argument(
        "--cell", default="NP", choices=demo_defaults.CELLS, help="cell code (default: NP)"
    )
    for flag, default, meaning in [
        ("--units", demo_defaults.UNITS, "units of the recurrent layer"),
        ("--length", demo_defaults.LENGTH, "steps per sequence"),
        ("--samples", demo_defaults.SAMPLES, "training sequences"),
        ("--epochs", demo_defaults.EPOCHS, "training epochs"),
    ]:
        demo.add_argument(flag, type=_positive_int, default=default, help=f"{meaning} ({default})")
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")

    _add_tune(commands)
    report = commands.add_parser(
        "report", help="write a markdown + PNG summary of the search in DIRECTORY"
    )
    report.add_argument("directory", help="a search directory (made by kgates tune)")

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
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list, got {text!r}"
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
_SIZE_FLAGS = ("samples", "length", "delay", "symbols")
_SPACE_FLAGS = {
    "units": _list(int),
    "layers": _list(int),
    "learning_rate": _range,
    "dropout": _range,
    "forget_bias": _list(str),
    "clipnorm": _list(float),
    "reset_after": _bools,
}


def _add_tune(commands) -> None:
    from kgates.study._directory import DEFAULTS, TUNER_NAMES
    from kgates.study._hypermodel import CELLS, SPACE
    from kgates.study._tasks import TASKS

    tune = commands.add_parser(
        "tune",
        help="search cells and hyperparameters with Keras Tuner, with gate dashboards per trial",
        description="Runs a Keras Tuner search over kgates cells on a task. Running the same "
        "command again on the same --directory resumes it (options left out are read from "
        "the directory). Options default to None here so that a resumed search keeps its own.",
    )
    tune.add_argument("--task", choices=tuple(TASKS), help=f"task (default: {DEFAULTS['task']})")
    tune.add_argument(
        "--cells",
        type=_list(str),
        help=f"comma-separated cell codes from {','.join(CELLS)} "
        f"(default: {','.join(DEFAULTS['cells'])})",
    )
    tune.add_argument(
        "--tuner", choices=TUNER_NAMES, help=f"search algorithm (default: {DEFAULTS['tuner']})"
    )
    tune.add_argument(
        "--max-trials",
        type=_positive_int,
        help=f"trials in all (default: {DEFAULTS['max_trials']})",
    )
    tune.add_argument("--epochs", type=_positive_int, help="epochs per trial (default: the task's)")
    tune.add_argument(
        "--seed", type=int, help=f"seed of data, tuner and weights (default: {DEFAULTS['seed']})"
    )
    tune.add_argument(
        "--directory",
        type=_directory,
        help="where the search lives (default: runs/TASK); same again resumes",
    )
    sizes = tune.add_argument_group("task sizes (default: the task's own)")
    for flag in _SIZE_FLAGS:
        sizes.add_argument(f"--{flag}", type=_positive_int, help=f"{flag} (adding, copy, code)")
    space = tune.add_argument_group(
        "search space: a comma-separated list of choices (one value fixes it); learning "
        "rate and dropout: a value or LOW:HIGH"
    )
    for name, kind in _SPACE_FLAGS.items():
        default = ",".join(str(v) for v in SPACE[name])
        if name in ("learning_rate", "dropout"):
            default = ":".join(str(v) for v in SPACE[name])
        space.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"(default: {default})")
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


def _tune(args, argv: list[str] | None = None) -> int:
    import socket

    from kgates.study import _directory
    from kgates.study._tune import tune

    directory = args.directory or f"runs/{args.task or _directory.DEFAULTS['task']}"
    if args.chief or args.worker:
        host, port = args.chief or args.worker
        os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"] = host, port
        worker = args.worker_id or f"worker-{socket.gethostname()}-{os.getpid()}"
        os.environ["KERASTUNER_TUNER_ID"] = "chief" if args.chief else worker
    if args.worker:
        # The chief writes the search's spec; a worker started at the same time waits for it.
        for _ in range(120):
            if _directory.stored_search(directory):
                break
            time.sleep(0.5)
        else:
            print(f"kgates tune: no search in {directory}; start the chief first", file=sys.stderr)
            return 2
    given = {
        k: getattr(args, k) for k in ("task", "cells", "tuner", "max_trials", "epochs", "seed")
    }
    given["sizes"] = {k: getattr(args, k) for k in _SIZE_FLAGS if getattr(args, k) is not None}
    given["space"] = {k: getattr(args, k) for k in _SPACE_FLAGS if getattr(args, k) is not None}
    try:
        tune(
            directory,
            **given,
            gate_freq=args.gate_freq,
            patience=args.patience,
            verbose="auto" if args.verbose is None else args.verbose,
        )
    except ValueError as error:
        print(f"kgates tune: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        command = " ".join(["kgates", *(argv or sys.argv[1:])])
        print(f"\nkgates tune: interrupted; `{command}` resumes the search.", file=sys.stderr)
        return 130
    if args.worker:
        return 0
    from kgates.study._report import summary

    print("\n" + summary(directory))
    print(f"\nNext: kgates report {directory}    kgates board {directory}")
    return 0


def serve(logdir: str, port: int) -> int:
    """Runs TensorBoard bound to 127.0.0.1 until interrupted."""
    from tensorboard import program

    if not os.path.isdir(logdir):
        print(f"kgates board: no such directory: {logdir}", file=sys.stderr)
        return 2
    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)])
    try:
        url = board.launch()
    except program.TensorBoardServerException as error:
        print(f"kgates board: {error.msg}", file=sys.stderr)
        return 2
    print(f"TensorBoard for {logdir} at {url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "demo":
        if args.length < 2:
            print("kgates demo: --length must be at least 2", file=sys.stderr)
            return 2
        from kgates.study._demo import run

        run(
            cell=args.cell,
            units=args.units,
            length=args.length,
            samples=args.samples,
            epochs=args.epochs,
            seed=args.seed,
        )
    elif args.command == "tune":
        return _tune(args, argv)
    elif args.command == "report":
        from kgates.study._report import write_report

        try:
            path = write_report(args.directory)
        except ValueError as error:
            print(f"kgates report: {error}", file=sys.stderr)
            return 2
        print(f"Wrote {path}")
    elif args.command == "board":
        return serve(args.logdir, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
