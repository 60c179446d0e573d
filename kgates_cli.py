"""The `kgates` command's entry point: it parses the arguments before Keras and its
backend load (TensorFlow takes seconds and talks on stderr), then imports what the
command needs. The command itself is `kgates.cli`."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ["KGATES_DEFER_IMPORTS"] = "1"  # read once, by kgates/__init__.py
    try:
        from kgates import cli
    finally:
        del os.environ["KGATES_DEFER_IMPORTS"]
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
