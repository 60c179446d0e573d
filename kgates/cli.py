"""The `kgates` command."""

from __future__ import annotations

import os
import shlex
import sys
import time

from kgates._parser import SIZE_FLAGS, SPACE_FLAGS, build_parser

# How long a worker waits for its chief's spec and port before it gives up.
CHIEF_WAIT_S = 60


def _tune(args, argv: list[str] | None = None) -> int:
    import socket

    from keras_tuner.errors import FatalError

    from kgates.study import _directory
    from kgates.study._tune import tune

    named = os.path.splitext(os.path.basename(args.data))[0] if args.data else args.task
    directory = args.directory or f"runs/{named or _directory.DEFAULTS['task']}"
    if args.chief:  # before anything is written: Keras Tuner would fail after the spec
        problem = _cannot_listen(*args.chief)
        if problem:
            print(f"kgates tune: --chief {':'.join(args.chief)}: {problem}", file=sys.stderr)
            return 2
    if args.chief or args.worker:
        host, port = args.chief or args.worker
        os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"] = host, port
        worker = args.worker_id or f"worker-{socket.gethostname()}-{os.getpid()}"
        os.environ["KERASTUNER_TUNER_ID"] = "chief" if args.chief else worker
    if args.worker:
        # The chief writes the search's spec, then listens; a worker started at the
        # same time waits for both (Keras Tuner alone would wait an hour, silently).
        host, port = args.worker
        deadline = time.monotonic() + CHIEF_WAIT_S
        while not _directory.stored_search(directory) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not _directory.stored_search(directory):
            print(f"kgates tune: no search in {directory}; start the chief first", file=sys.stderr)
            return 2
        while not _listening(host, int(port)) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not _listening(host, int(port)):
            print(
                f"kgates tune: no chief answers at {host}:{port} (waited {CHIEF_WAIT_S} s); "
                f"start it with `kgates tune --directory {directory} --chief {host}:{port}`",
                file=sys.stderr,
            )
            return 2
    given = {
        k: getattr(args, k)
        for k in (
            "task",
            "cells",
            "tuner",
            "max_trials",
            "epochs",
            "seed",
            "data",
            "objective",
            "margin",
        )  # fmt: skip
    }
    given["sizes"] = {k: getattr(args, k) for k in SIZE_FLAGS if getattr(args, k) is not None}
    given["space"] = {k: getattr(args, k) for k in SPACE_FLAGS if getattr(args, k) is not None}
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
    except FatalError as error:  # the machine's fault (disk, permissions): resumable
        print(f"kgates tune: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        command = shlex.join(["kgates", *(argv or sys.argv[1:])])
        print(f"\nkgates tune: interrupted; `{command}` resumes the search.", file=sys.stderr)
        return 130
    if args.worker:
        return 0
    from kgates.study._report import summary

    print("\n" + summary(directory))
    quoted = shlex.quote(directory)
    print(f"\nNext: kgates report {quoted}    kgates board {quoted}")
    return 0


def _listening(host: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def _cannot_listen(host: str, port: str) -> str | None:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as error:
            return error.strerror or str(error)
    return None


def serve(logdir: str, port: int) -> int:
    """Runs TensorBoard bound to 127.0.0.1 until interrupted."""
    from tensorboard import program

    if not os.path.isdir(logdir):
        print(f"kgates board: no such directory: {logdir}", file=sys.stderr)
        return 2
    board = program.TensorBoard()
    board.configure(
        argv=[None, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)]
        # every explorer record (0: keep all), not TensorBoard's default 10 per run
        + ["--samples_per_plugin", "kgates=0"]
    )
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


def _explore(args) -> int:
    """`kgates explore`: checks its arguments before it reads or writes anything."""
    out = os.path.abspath(args.out)
    problem = None
    if not os.path.isdir(args.logdir):
        problem = f"no such directory: {args.logdir}"
    elif os.path.isdir(out):
        problem = f"--out {args.out} is a directory; expected a file name, e.g. gates.html"
    elif not os.path.isdir(os.path.dirname(out)):
        problem = f"--out {args.out}: no such directory {os.path.dirname(out)}"
    elif not os.access(os.path.dirname(out), os.W_OK):
        problem = f"--out {args.out}: cannot write in {os.path.dirname(out)}"
    if problem:
        print(f"kgates explore: {problem}", file=sys.stderr)
        return 2
    _load_keras()
    from kgates.inspect._plugin import explore

    try:
        path, runs = explore(args.logdir, out, args.last)
    except ValueError as error:
        print(f"kgates explore: {error}", file=sys.stderr)
        return 2
    size = os.path.getsize(path) / 2**20
    runs = f"{runs} run{'s' if runs != 1 else ''}"
    print(f"Wrote {args.out} ({runs}, {size:.1f} MB); open it in a browser")
    return 0


def _load_keras(summaries: bool = False) -> None:
    """Imports Keras and starts its backend's devices with their chatter hidden
    (TensorFlow's CUDA probing and CPU-feature lines go to the process's stderr,
    whatever TF_CPP_MIN_LOG_LEVEL says); Python errors still show. `summaries`: also
    `tf.summary`, which the dashboards write with on every backend (on JAX and torch
    it would otherwise load TensorFlow, and its chatter, in the first epoch)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras  # noqa: F401

            from kgates.cells._backend import accelerator_available, tensorflow_summary

            accelerator_available()  # starts the backend's devices, which TensorFlow logs
            if summaries:
                tensorflow_summary()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("board", "explore"):
        _load_keras(summaries=args.command in ("demo", "tune"))
    if args.command == "demo":
        if args.length < 2 or args.samples < 2:
            wrong = (
                "--length must be at least 2" if args.length < 2 else "--samples must be at least 2"
            )
            print(f"kgates demo: {wrong}", file=sys.stderr)
            return 2
        from kgates.study._demo import run

        try:
            run(
                cell=args.cell,
                units=args.units,
                length=args.length,
                samples=args.samples,
                epochs=args.epochs,
                seed=args.seed,
            )
        except KeyboardInterrupt:
            print("\nkgates demo: interrupted.", file=sys.stderr)
            return 130
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
    elif args.command == "inspect":
        from kgates.inspect._saved import inspect_saved

        try:
            path = inspect_saved(
                args.model, args.data, args.out, args.mask_value, args.labels, args.limit
            )
        except ValueError as error:
            print(f"kgates inspect: {error}", file=sys.stderr)
            return 2
        print(
            f"Wrote {path}; the dashboards and the Gates tab: kgates board {args.out}; "
            f"one HTML file: kgates explore {args.out} -o gates.html"
        )
    elif args.command == "explore":
        return _explore(args)
    elif args.command == "board":
        return serve(args.logdir, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
