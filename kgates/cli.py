"""The `kgates` command."""

from __future__ import annotations

import argparse
import os
import sys


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
    return parser


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
