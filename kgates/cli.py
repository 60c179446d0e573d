"""The `kgates` command."""

from __future__ import annotations

import argparse
import os
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


def build_parser() -> argparse.ArgumentParser:
    from kgates import demo as demo_defaults

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

    board = commands.add_parser(
        "board", help="start TensorBoard on 127.0.0.1 with the gate dashboards of LOGDIR"
    )
    board.add_argument("logdir", help="a run directory, or a directory of runs")
    board.add_argument("--port", type=int, default=6006, help="port (6006; 0 picks a free one)")
    return parser


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
        return 1
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
        from kgates.demo import run

        run(
            cell=args.cell,
            units=args.units,
            length=args.length,
            samples=args.samples,
            epochs=args.epochs,
            seed=args.seed,
        )
    elif args.command == "board":
        return serve(args.logdir, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
