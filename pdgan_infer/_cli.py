"""What the command-line tools share: argument types, `--version` / `-q` / `-v`, logging and exit codes.

    parser = argparse.ArgumentParser(prog="pdgan-x")
    add_common_arguments(parser)            # --version, -q/--quiet, -v/--verbose
    args = parser.parse_args(argv)          # a wrong command line exits with status 2 (argparse)
    return run_cli("pdgan-x", args, lambda: work(args))   # a failed run: one line on stderr, status 1

Library code logs to `logging.getLogger("pdgan")` (children "pdgan.*") and never prints; `run_cli`
attaches a stderr handler to that logger for the duration of the command: INFO by default, WARNING
with -q, DEBUG with -v. Results go to stdout, everything else to stderr.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from ._version import __version__
from .seeds import parse_seeds

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LOGGER = "pdgan"


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def seed_list(text: str) -> list[int]:
    """argparse type: '0-49999' or '0-9,20,30-39' (`pdgan_infer.seeds.parse_seeds`)."""
    try:
        return parse_seeds(text)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_common_arguments(parser: argparse.ArgumentParser, version: bool = True, verbosity: bool = True) -> None:
    """--version and -q/--quiet, -v/--verbose (a CLI with subcommands puts the latter on its subcommands)."""
    if version:
        parser.add_argument("--version", action="version", version=f"%(prog)s (pdgan) {__version__}")
    if verbosity:
        g = parser.add_mutually_exclusive_group()
        g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr, no progress "
                       "bars")
        g.add_argument("-v", "--verbose", action="store_true", help="debug messages on stderr")


class _Handler(logging.StreamHandler):
    """The handler a CLI attaches (recognisable, so a second `main()` call in one process replaces it).
    It writes to whatever `sys.stderr` is at each message, not the stream of the moment it was made (a
    test's captured stream, closed once the test ends, would turn every later message into an error)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; sys.stderr is always used
        pass


def setup_logging(prog: str, quiet: bool = False, verbose: bool = False) -> logging.Logger:
    logger = logging.getLogger(LOGGER)
    for h in [h for h in logger.handlers if isinstance(h, _Handler)]:
        logger.removeHandler(h)
    handler = _Handler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    return logger


def one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text if text else type(err).__name__


# What a command reports as a failed run (exit 1) instead of a traceback: pdgan's own errors (all
# PDGANError, most also ValueError), bad files and environments. Anything else is a bug: traceback.
RUNTIME_ERRORS = (ValueError, OSError, ImportError, RuntimeError, TypeError)


def run_cli(prog: str, args: argparse.Namespace, body: Callable[[], int | None]) -> int:
    """Run `body` with logging set up from args.quiet / args.verbose; exit status 0, 1 (failure, one
    line on stderr) or 130 (Ctrl-C)."""
    from .errors import PDGANError

    previous_level = logging.getLogger(LOGGER).level
    logger = setup_logging(prog, getattr(args, "quiet", False), getattr(args, "verbose", False))
    try:
        status = body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (PDGANError, *RUNTIME_ERRORS) as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:  # a main() called in-process (tests, notebooks) leaves the library's logging as it was
        for h in [h for h in logger.handlers if isinstance(h, _Handler)]:
            logger.removeHandler(h)
        logger.setLevel(previous_level)
    return EXIT_OK if status is None else int(status)
