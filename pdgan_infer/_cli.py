"""What the command-line tools share: the parser, argument types, output checks, `--version` / `-q` / `-v`,
logging and exit codes.

    parser = ArgumentParser(prog="pdgan-x", epilog=examples("pdgan-x digits --out x.png"))
    add_common_arguments(parser)              # --version, -q/--quiet, -v/--verbose
    args = parser.parse_args(argv)
    return run_cli("pdgan-x", args, lambda: work(args))   # a failed run: one line on stderr, status 1

A wrong command line is one line on stderr, status 2. `--help` (`HelpFormatter`, every parser's and
subcommand's) adds "(default: X)" only where X is a real value that the help text does not state already, and
keeps indented lines (the "Examples:" epilog, made by `examples`) as written.

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


class HelpFormatter(argparse.HelpFormatter):
    """--help that shows a default only when it says something: " (default: X)" for an option or optional
    positional whose default is a number, a string or a path, unless its help text already mentions "default";
    never None, never the True/False of a flag (store_true, store_false, BooleanOptionalAction, count), never a
    SUPPRESSed one. In descriptions and epilogs, indented lines (an "Examples:" block) keep their line breaks
    and the other lines are wrapped."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or not shows_default(action):
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out, prose = [], []

        def flush() -> None:
            if prose:
                out.append(super(HelpFormatter, self)._fill_text(" ".join(prose), width, indent))
                prose.clear()

        for line in text.strip("\n").splitlines():
            if line[:1].isspace() or not line.strip():
                flush()
                out.append(indent + line.rstrip())
            else:
                prose.append(line.strip())
        flush()
        return "\n".join(out)


def shows_default(action: argparse.Action) -> bool:
    """Whether --help states `action`'s default: a real value (a number, a non-empty string, a path) of an
    option or an optional positional that takes a value; not None, SUPPRESS, a flag's bool or a list."""
    default = action.default
    if action.nargs == 0 or isinstance(default, bool) or default is None or default is argparse.SUPPRESS:
        return False
    if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
        return False
    return isinstance(default, (int, float, os.PathLike)) or (isinstance(default, str) and default != "")


def examples(*commands: str) -> str:
    """The "Examples:" epilog of a command's --help: one command line each, written as a user types it
    (a '  # comment' after it is allowed); tests/cli/test_help.py parses every one with the command's parser."""
    return "Examples:\n" + "\n".join(f"  {c}" for c in commands)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error, 'PROG: error: MESSAGE (see --help)', and exit status 2 (argparse
    prints the whole usage first), and `HelpFormatter` unless another formatter_class is given. Subcommand
    parsers are of this class too."""

    def __init__(self, *args, formatter_class: type = HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

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


def add_common_arguments(parser: argparse.ArgumentParser, version: bool = True, verbosity: bool = True,
                         subcommand: bool = False) -> None:
    """--version and -q/--quiet, -v/--verbose. A command with subcommands calls it on its top-level parser and,
    with subcommand=True (no --version; -q/-v default to unset, so they do not undo the top level's), on each
    subcommand's parser (or a parents= parser they share): `pdgan-edit -q MODEL vary ...` and
    `pdgan-edit MODEL vary -q ...` are the same command."""
    if version and not subcommand:
        parser.add_argument("--version", action="version", version=f"%(prog)s (pdgan) {__version__}")
    if verbosity:
        unset = {"default": argparse.SUPPRESS} if subcommand else {}
        g = parser.add_mutually_exclusive_group()
        g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr, no progress "
                       "bars", **unset)
        g.add_argument("-v", "--verbose", action="store_true", help="debug messages on stderr", **unset)


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
