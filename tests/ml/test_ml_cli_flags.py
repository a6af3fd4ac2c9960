"""Every command's flags (ml/cli/, bench/): one meaning per flag name, and --model is the shipped checkpoint by default.

Each command builds its parser in ``build_parser()``; this builds them all and compares every
occurrence of a flag: its help text and type must be the same wherever it appears (``ml.cli_args``
holds the shared ones). What a command may choose — required or not, its default, its metavar, and
whether ``--films`` repeats — is not part of the meaning.
"""

import argparse
import importlib
import importlib.util
import sys
from collections import defaultdict
from pathlib import Path
from unittest import mock

import pytest

from ml import cli_args
from ml.constants import DEFAULT_WEIGHTS

REPO = Path(__file__).resolve().parents[2]
COMMANDS = sorted(path.stem for path in (REPO / "ml" / "cli").glob("*.py") if path.stem != "__init__")
BENCHES = sorted(path.stem for path in (REPO / "bench").glob("*.py"))
# bench/load.py imports gevent (patching the standard library at import) and Locust first: stand-ins,
# always, so that building its parser here patches nothing whether or not they are installed.
STAND_INS = ("gevent", "gevent.monkey", "gevent.pool", "locust", "locust.env")


@pytest.fixture(scope="module")
def parsers():
    """{command: its parser}, for every module of ml/cli/ and bench/."""
    found = {f"ml.cli.{name}": importlib.import_module(f"ml.cli.{name}").build_parser() for name in COMMANDS}
    with mock.patch.dict(sys.modules, {name: mock.MagicMock() for name in STAND_INS}), \
            mock.patch.object(sys, "path", list(sys.path)):
        for name in BENCHES:
            spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            found[f"bench/{name}.py"] = module.build_parser()
    return found


def every_parser(name, parser):
    """(name, parser) for the parser and each of its subcommands' parsers (bench/load.py web, e2e, ...)."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from every_parser(f"{name} {sub}", subparser)


def occurrences(parsers):
    """{flag: [(command, action)]} over every parser, --help left out."""
    found = defaultdict(list)
    for command, top in parsers.items():
        for name, parser in every_parser(command, top):
            for action in parser._actions:
                for flag in action.option_strings:
                    if flag not in ("-h", "--help"):
                        found[flag].append((name, action))
    return found


def meaning(action):
    return action.help, action.type, action.choices


def test_it_builds_every_commands_parser(parsers):
    assert {"ml.cli.train", "ml.cli.evaluate", "ml.cli.fit_subtype", "bench/bench_runtimes.py", "bench/load.py"} <= set(parsers)
    assert len(parsers) == len(COMMANDS) + len(BENCHES)


def test_it_gives_each_flag_one_help_text_and_type_across_commands(parsers):
    two_meanings = {}
    for flag, found in occurrences(parsers).items():
        meanings = {meaning(action) for _, action in found if action.help is not argparse.SUPPRESS}
        if len(meanings) > 1:
            two_meanings[flag] = sorted(command for command, _ in found)
        files = {command.split(" ")[0] for command, _ in found}
        if len(files) > 1:  # a flag of several commands says what it means
            assert all(action.help for _, action in found), flag
    assert two_meanings == {}


def test_the_shared_flags_take_their_meaning_from_one_table(parsers):
    for flag, found in occurrences(parsers).items():
        if flag in cli_args.FLAGS:
            for command, action in found:
                if action.help is not argparse.SUPPRESS:
                    assert action.help == cli_args.FLAGS[flag]["help"], (flag, command)


REWRITES_THE_CARD = {"ml.cli.calibrate", "ml.cli.fit_ood", "ml.cli.fit_subtype"}


def test_model_defaults_to_the_shipped_weights_in_every_command_that_only_reads_it(parsers):
    found = occurrences(parsers)["--model"]
    assert {command for command, _ in found} >= {
        "ml.cli.ablation", "ml.cli.calibrate", "ml.cli.evaluate", "ml.cli.export_split", "ml.cli.fit_ood",
        "ml.cli.fit_subtype", "ml.cli.predict", "ml.cli.shift", "ml.cli.sweep_maps", "bench/bench_inference.py",
        "bench/bench_runtimes.py"}
    for command, action in found:
        if command in REWRITES_THE_CARD:  # a forgotten --model must not rewrite the shipped model's card
            assert (action.default, action.required) == (None, True), command
        else:
            assert (action.default, action.required) == (DEFAULT_WEIGHTS, False), command


def test_data_is_always_training_sources_and_films_always_labelled_films(parsers):
    found = occurrences(parsers)
    assert {command for command, _ in found["--data"]} == {
        f"ml.cli.{name}" for name in ("ablation", "calibrate", "export_split", "fit_ood", "fit_subtype", "train",
                                      "train_focus")}
    assert {command for command, _ in found["--films"]} == {
        "ml.cli.evaluate", "ml.cli.shift", "ml.cli.sweep_maps", "bench/bench_runtimes.py",
        "bench/site_calibration_sim.py"}
    for _, action in found["--data"]:
        assert action.type is cli_args.training_source and action.metavar == "NAME=PATH"
    parsed = importlib.import_module("ml.cli.fit_subtype").build_parser().parse_args(["--model", "m.safetensors", "--data", "kermany=/films"])
    assert parsed.data == [("kermany", Path("/films"))]


def test_every_hidden_spelling_is_a_renamed_or_retired_flag(parsers):
    for command, top in parsers.items():
        for name, parser in every_parser(command, top):
            shown = {flag for action in parser._actions for flag in action.option_strings}
            for flag, action in parser._option_string_actions.items():
                if flag not in shown:
                    assert isinstance(action, cli_args.Renamed) and flag in action.old, (name, flag)
                if action.help is argparse.SUPPRESS:
                    assert isinstance(action, cli_args.Retired), (name, flag)


def test_an_old_spelling_still_works_for_a_release_and_says_so(parsers, capsys):
    evaluate = parsers["ml.cli.evaluate"]
    assert evaluate.parse_args(["--data", "films.csv"]).films == Path("films.csv")
    assert "--data is now --films" in capsys.readouterr().err
    assert "--data" not in evaluate.format_help()
    shift = parsers["ml.cli.shift"].parse_args(["--films", "a.csv", "--data", "b.csv"])
    assert shift.films == [Path("a.csv"), Path("b.csv")]
    ablation = parsers["ml.cli.ablation"].parse_args(["--checkpoint", "m.safetensors", "--data", "k=/x", "--epochs", "3"])
    assert (ablation.model, ablation.probe_epochs) == (Path("m.safetensors"), 3)
    train = parsers["ml.cli.train"].parse_args(["--data", "k=/x", "--out", "m.safetensors", "--download-weights"])
    assert not hasattr(train, "download_weights") and "does nothing" in capsys.readouterr().err


def test_a_shared_flag_keeps_its_type_and_help(parsers):
    with pytest.raises(TypeError, match="one meaning"):
        cli_args.add(argparse.ArgumentParser(), "--seed", help="something else")
