"""Every command's --help: exit status 0, real defaults only (no "(default: None)", no True/False of a flag, never
a default twice), an "Examples:" section whose every line is the command itself (or torchrun -m of its module) and
parses with the command's own parser; -q/-v before or after a subcommand; the serving defaults that pdgan-export
--format triton writes and pdgan-serve uses.

`HelpFormatter` is checked against help text written out by hand (the reference: what argparse's help layout
gives for those lines); the commands' help against the rules above, parsed from what --help prints."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import re
import shlex
from pathlib import Path

import pytest
from test_entry_points import COMMANDS  # tests/cli: every pdgan-* command -> the module whose main() it runs

from pdgan_infer._cli import HelpFormatter, examples


def build(prog: str) -> argparse.ArgumentParser:
    module = importlib.import_module(COMMANDS[prog])
    return (getattr(module, "build_parser", None) or module.parser)()


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    """The command line as the command's main() parses it (pdgan-edit first joins `--strengths -2,...`)."""
    if prog == "pdgan-edit":
        from pdgan_train.cli.edit import _join_negative_values
        argv = _join_negative_values(argv)
    return build(prog).parse_args(argv)


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and its subcommands' parsers (recursively)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser] + [p for a in subs for sub in dict.fromkeys(a.choices.values()) for p in all_parsers(sub)]


def example_lines(help_text: str) -> list[str]:
    """The indented lines under "Examples:" (up to the next unindented line)."""
    lines = help_text.split("Examples:\n", 1)[1].splitlines()
    taken = []
    for line in lines:
        if not line.startswith("  "):
            break
        taken.append(line.strip())
    return taken


def command_argv(prog: str, line: str) -> list[str]:
    """The arguments of an example line after the command's name; fails when the line runs another command."""
    words = shlex.split(line, comments=True)
    if words[0] == "torchrun":  # torchrun [options] -m MODULE args: MODULE's main must be the command's
        module = words[words.index("-m") + 1]
        target = importlib.import_module(COMMANDS[prog])
        if module != target.__name__:  # a package runs its __main__, which calls the command's main
            main_source = Path(importlib.util.find_spec(module + ".__main__").origin).read_text()
            assert f"from {target.__name__.replace(module, '', 1)} import main" in main_source, (prog, line)
        return words[words.index("-m") + 2:]
    assert words[0] == prog, f"{prog}'s example runs {words[0]}: {line}"
    return words[1:]


# --- the formatter, on a parser of every kind of action -------------------------------------------------------
def test_formatter_shows_real_defaults_only():
    p = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter, add_help=False)
    p.add_argument("model", nargs="?", help="a model")
    p.add_argument("--none", help="no default")
    p.add_argument("--n", type=int, default=5, help="a count")
    p.add_argument("--name", default="auto", help="a name")
    p.add_argument("--said", default=7, help="a value (default 7)")
    p.add_argument("--said-too", default=8, help="a value (default %(default)s)")
    p.add_argument("--flag", action="store_true", help="a flag")
    p.add_argument("--no-flag", dest="flag2", action="store_false", help="a negated flag")
    p.add_argument("--both", action=argparse.BooleanOptionalAction, default=None, help="on or off")
    p.add_argument("-v", action="count", default=0, help="louder")
    p.add_argument("--hidden", default=argparse.SUPPRESS, help="not shown")
    p.add_argument("--seeds", default=[0, 1], help="a list")
    p.add_argument("--empty", default="", help="an empty string")
    helps = {" ".join(a.option_strings) or a.dest: p._get_formatter()._expand_help(a) for a in p._actions}
    assert helps == {
        "model": "a model", "--none": "no default", "--n": "a count (default: 5)", "--name": "a name (default: auto)",
        "--said": "a value (default 7)", "--said-too": "a value (default 8)", "--flag": "a flag",
        "--no-flag": "a negated flag", "--both --no-both": "on or off", "-v": "louder", "--hidden": "not shown",
        "--seeds": "a list", "--empty": "an empty string"}


def test_formatter_keeps_the_examples_and_wraps_prose():
    long = "pdgan-x digits --out a.png   # " + " ".join(["long"] * 20)
    text = "word " * 30 + "\n\n" + examples(long, "pdgan-x --help")
    p = argparse.ArgumentParser(prog="x", formatter_class=lambda prog: HelpFormatter(prog, width=60), epilog=text)
    words = " ".join(["word"] * 12)
    assert p.format_help() == ("usage: x [-h]\n\noptions:\n  -h, --help  show this help message and exit\n\n"
                               f"{words}\n{words}\n{' '.join(['word'] * 6)}\n\nExamples:\n  {long}\n"
                               "  pdgan-x --help\n")


# --- every command -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_help_exits_0_with_examples_and_real_defaults(prog, capsys):
    module = importlib.import_module(COMMANDS[prog])
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    top = capsys.readouterr().out
    assert exit_.value.code == 0 and top.startswith(f"usage: {prog} ")
    for parser in all_parsers(build(prog)):
        text = parser.format_help() if parser.prog != prog else top
        where = parser.prog
        assert "Examples:\n" in text, f"{where} --help has no Examples section"
        assert "(default: None)" not in text, where
        flags = {o for a in parser._actions if a.nargs == 0 for o in a.option_strings}
        for match in re.finditer(r"\(default: (True|False)\)", text):
            raise AssertionError(f"{where} shows a flag's {match[0]} ({sorted(flags)})")
        formatter = parser._get_formatter()
        for action in parser._actions:  # an option whose help states a default gets no second one
            if action.help and "default" in action.help.lower():
                assert formatter._get_help_string(action) == action.help, (where, action.option_strings)
        lines = example_lines(text)
        assert lines, where
        for line in lines:
            argv = command_argv(prog, line)
            try:
                parse(prog, argv)
            except SystemExit as e:
                raise AssertionError(f"{prog}'s example does not parse: {line}\n{capsys.readouterr().err}") from e


# --- -q / -v before or after a subcommand ---------------------------------------------------------------------------
@pytest.mark.parametrize("prog, before, after", [
    ("pdgan-edit", ["digits"], ["vary", "--which", "z", "--out", "x.png"]),
    ("pdgan-convert", [], ["ddgan", "netG.pth", "--config", "cifar10", "--out", "folder"]),
])
def test_quiet_and_verbose_anywhere(prog, before, after):
    plain = parse(prog, before + after)
    assert (plain.quiet, plain.verbose) == (False, False)
    for flag, name in (("-q", "quiet"), ("--verbose", "verbose")):
        first, last = parse(prog, [flag] + before + after), parse(prog, before + after + [flag])
        if before:
            middle = parse(prog, before[:1] + [flag] + before[1:] + after)
            assert getattr(middle, name)
        assert getattr(first, name) and getattr(last, name), (prog, flag)
        assert vars(first) == vars(last)


@pytest.mark.slow  # ~10 s: loads the digits model and data, fits a direction
def test_edit_quiet_before_the_subcommand_silences_the_run(tmp_path, capsys):
    """pdgan-edit attribute logs the direction's accuracy (INFO); -q before MODEL silences it as -q after does."""
    from pdgan_train.cli.edit import main

    argv = ["digits", "attribute", "--data", "digits", "--target", "3", "--index", "0", "--strengths", "0,1",
            "--fit-max", "60", "--device", "cpu"]
    for quiet, out in ((False, tmp_path / "plain.png"), (True, tmp_path / "quiet.png")):
        assert main((["-q"] if quiet else []) + argv + ["--out", str(out)]) == 0
        captured = capsys.readouterr()
        assert out.is_file() and captured.out.strip() == str(out)
        assert (captured.err == "") if quiet else ("held-out accuracy" in captured.err), captured.err


def test_serve_without_arguments_is_one_line(capsys):
    from pdgan_infer.cli.serve import main

    with pytest.raises(SystemExit) as exit_:
        main([])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("pdgan-serve: error: give a MODEL"), err


# --- pdgan-export --format triton and pdgan-serve: the same serving defaults ---------------------------------------
def test_export_and_serve_share_the_queue_delay_and_say_why_max_batch_differs():
    from pdgan_infer.serve import repository, server

    def option(prog: str, flag: str) -> argparse.Action:
        return next(a for a in build(prog)._actions if flag in a.option_strings)

    delays = {option("pdgan-export", "--max-queue-delay-us").default,
              option("pdgan-serve", "--max-queue-delay-us").default,
              inspect.signature(repository.export_triton).parameters["max_queue_delay_us"].default,
              inspect.signature(server.serve).parameters["max_queue_delay_us"].default,
              inspect.signature(server.engine_repository).parameters["max_queue_delay_us"].default}
    assert len(delays) == 1 and 0 < delays.pop() <= 10_000
    export_batch, serve_batch = option("pdgan-export", "--max-batch"), option("pdgan-serve", "--max-batch-size")
    assert export_batch.default == inspect.signature(repository.export_triton).parameters["max_batch_size"].default
    assert serve_batch.default is None  # the Engine's batch for the device pdgan-serve starts on
    assert "pdgan-serve" in export_batch.help and "device" in export_batch.help
    assert "pdgan-export" in serve_batch.help and str(export_batch.default) in serve_batch.help
