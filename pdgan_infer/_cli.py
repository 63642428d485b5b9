"""What the command-line tools share: the parser, argument types, output checks, `--version` / `-q` / `-v`,
logging and exit codes.

    parser = ArgumentParser(prog="pdgan-x")   # a wrong command line: one line on stderr, status 2
    add_common_arguments(parser)              # --version, -q/--quiet, -v/--verbose
    args = parser.parse_args(argv)
    return run_cli("pdgan-x", args, lambda: work(args))   # a failed run: one line on stderr, status 1

Every number an option takes is range-checked by its type (`int_range`, `float_range`, `block_seed`), so
NaN, infinities and sizes that would exhaust memory are usage errors. `check_outputs` (the files layer's rule,
`pdgan_infer.files`) runs before the work: an output that is an input or inside one, a user's file without
--overwrite, a symlinked output folder, a folder where a file is expected, or a path that cannot be created
fails at once instead of after a long run.

Library code logs to `logging.getLogger("pdgan")` (children "pdgan.*") and never prints; `run_cli`
attaches a stderr handler to that logger for the duration of the command: INFO by default, WARNING
with -q, DEBUG with -v; under torchrun the processes other than rank 0 log warnings and errors only.
Progress (bars on a terminal or in a notebook, periodic lines elsewhere) is `pdgan_infer.progress`; -q turns
it off. Results go to stdout, everything else to stderr. No exception escapes `run_cli`
as a traceback unless -v is given.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import pickle
import re
import sys
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path

from ._version import __version__
from .distributed import process_rank
from .errors import PDGANError
from .files import OutputError, check_outputs  # noqa: F401  (the commands' one output check)
from .seeds import MAX_BLOCK_SEED, parse_seeds

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LOGGER = "pdgan"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error, 'PROG: error: MESSAGE (see --help)', and exit status 2 (argparse
    prints the whole usage first). Subcommand parsers are of this class too."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


_INTEGER = re.compile(r"-?[0-9]{1,4300}")  # int() would also take '+5', '1_0' and other scripts' digits


def ascii_int(text: str | None) -> int | None:
    """The integer `text` spells in ASCII digits (an optional '-', spaces around), else None."""
    match = _INTEGER.fullmatch(text.strip()) if isinstance(text, str) else None
    return None if match is None else int(match[0])


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [lo, hi] (no upper bound when hi is None)."""
    def parse(text: str) -> int:
        value = ascii_int(text)
        if value is None:
            raise argparse.ArgumentTypeError(f"expected an integer (ASCII digits), got {text!r}")
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}" if hi is None
                                             else f"must be in [{lo}, {hi}], got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def float_range(lo: float = -math.inf, hi: float = math.inf) -> Callable[[str], float]:
    """argparse type: a finite number in [lo, hi] ('nan', 'inf' and overflowing values are refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo:g}, {hi:g}], got {value:g}")
        return value
    parse.__name__ = "number"
    return parse


positive_int = int_range(1)
block_seed = int_range(0, MAX_BLOCK_SEED - 1)  # `seed=s`: image i uses the per-image seed s * 2**16 + i


def seed_list(text: str) -> list[int]:
    """argparse type: '0-49999' or '0-9,20,30-39' (`pdgan_infer.seeds.parse_seeds`)."""
    try:
        return parse_seeds(text)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# --- outputs are checked before the work (the rule: pdgan_infer.files) ----------------------------------
def model_files(model: str | os.PathLike | None) -> list[Path]:
    """The local files a model argument (bundled name, checkpoint file or folder) reads: weights and JSON.
    Nothing for a Hub id or a missing path (nothing is downloaded here)."""
    from .checkpoint import FOLDER_CONFIG, _paths
    from .hub import pretrained_models, pretrained_path

    if model is None:
        return []
    text = os.fspath(model)
    if not text.strip():  # not the working directory: the loader refuses an empty name
        return []
    if text in pretrained_models():
        local = Path(pretrained_path(text))
    else:
        local = Path(text).expanduser()
        if not (local.exists() or local.with_name(local.name + ".safetensors").exists()):
            return []
    weights, sidecar = _paths(local)
    if local.is_dir():  # a run folder (model.json) or a save_pretrained one (config.json): nothing is written in it
        return [local, weights, weights.with_name("model.json"), weights.with_name(FOLDER_CONFIG)]
    return [weights, sidecar]


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    """--overwrite: replace existing outputs that pdgan did not write (`pdgan_infer.files`' rule)."""
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files that pdgan did "
                        "not write, or write into a folder pdgan did not write (the other files in it are kept); "
                        "without it they are refused before the work")


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
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    if process_rank() != 0:  # torchrun: the other processes do the same work; rank 0 alone reports it
        level = max(level, logging.WARNING)
    logger.setLevel(level)
    return logger


def one_line(err: BaseException) -> str:
    """The exception's message as one line (a multi-line message is joined; an empty one is its type)."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    if isinstance(err, MemoryError):
        return f"out of memory{': ' + text if text else ''}; ask for fewer or smaller images"
    return text if text else type(err).__name__


# What a command reports as a failed run (exit 1, one line): pdgan's own errors (all PDGANError) and what
# bad files, data and environments raise. Anything else is a bug: still exit 1 and one line (which says
# so and points to -v), the traceback only with -v.
RUNTIME_ERRORS = (ValueError, OSError, ImportError, RuntimeError, TypeError, EOFError, MemoryError,
                  pickle.UnpicklingError, zipfile.BadZipFile)


def run_cli(prog: str, args: argparse.Namespace, body: Callable[[], int | None]) -> int:
    """Run `body` with logging set up from args.quiet / args.verbose; exit status 0, 1 (failure, one
    line on stderr, the traceback before it with -v) or 130 (Ctrl-C)."""
    verbose = getattr(args, "verbose", False)
    previous_level = logging.getLogger(LOGGER).level
    previous = [h for h in logging.getLogger(LOGGER).handlers if isinstance(h, _Handler)]  # a command run by one
    logger = setup_logging(prog, getattr(args, "quiet", False), verbose)
    try:
        status = body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - the one place a command turns an exception into exit status 1
        if verbose:
            traceback.print_exc()
        if isinstance(err, (PDGANError, *RUNTIME_ERRORS)):
            print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        else:
            print(f"{prog}: error: unexpected {type(err).__name__}: {one_line(err)} (a bug in pdgan: run again "
                  "with -v for the traceback and report it)", file=sys.stderr)
        return EXIT_FAILURE
    finally:  # a main() called in-process (tests, notebooks) leaves the library's logging as it was
        for h in [h for h in logger.handlers if isinstance(h, _Handler)]:
            logger.removeHandler(h)
        for h in previous:
            logger.addHandler(h)
        logger.setLevel(previous_level)
    return EXIT_OK if status is None else int(status)
