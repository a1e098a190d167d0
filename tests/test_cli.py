"""The ``groupconv`` command: JSON output against the schemas in docs/cli-json.md, one-line
errors with exit status 2, help, and the README's examples against the real output."""

from __future__ import annotations

import argparse
import doctest
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import groupconv
from groupconv.cli import main

ROOT = Path(__file__).resolve().parents[1]
BUILDER = """
import torch

def build():
    return torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, groups=2), torch.nn.Flatten(), torch.nn.Linear(8 * 4, 3))
"""


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """A module ``cli_models`` in the current directory, imported afresh by each test."""
    (tmp_path / "cli_models.py").write_text(textwrap.dedent(BUILDER))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "cli_models", raising=False)
    return tmp_path


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``groupconv *argv``."""
    try:
        status = main(argv)
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


# JSON schemas ----------------------------------------------------------------------------------------------------


def documented_schemas() -> dict[str, dict]:
    """Every JSON Schema in docs/cli-json.md, by its $id."""
    blocks = re.findall(r"```json\n(.*?)```", (ROOT / "docs" / "cli-json.md").read_text(), flags=re.S)
    schemas = [json.loads(block) for block in blocks]
    return {schema["$id"]: schema for schema in schemas}


SCHEMAS = documented_schemas()
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(value, schema: dict, document: dict, path: str = "$") -> list[str]:
    """What is wrong with ``value`` under the JSON Schema keywords the docs use
    ($ref, anyOf, const, enum, type, minimum, properties, required, additionalProperties, items)."""
    if "$ref" in schema:
        document_id, _, pointer = schema["$ref"].partition("#")
        document = SCHEMAS[document_id] if document_id else document
        target = document
        for key in filter(None, pointer.split("/")):
            target = target[key]
        return schema_errors(value, target, document, path)
    if "anyOf" in schema and all(schema_errors(value, option, document, path) for option in schema["anyOf"]):
        return [f"{path}: {value!r} matches none of {schema['anyOf']}"]
    if "const" in schema and value != schema["const"]:
        return [f"{path}: {value!r} is not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    types = schema.get("type", [])
    if types and not any(TYPES[t](value) for t in ([types] if isinstance(types, str) else types)):
        return [f"{path}: {value!r} is not of type {types}"]
    if "minimum" in schema and TYPES["number"](value) and value < schema["minimum"]:
        return [f"{path}: {value} < {schema['minimum']}"]
    errors = []
    if isinstance(value, dict):
        errors += [f"{path}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}: undocumented {key!r}" for key in value if key not in schema.get("properties", {})]
        for key, item in value.items():
            if key in schema.get("properties", {}):
                errors += schema_errors(item, schema["properties"][key], document, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], document, f"{path}[{index}]")
    return errors


def check(output: str, schema_id: str) -> dict:
    data = json.loads(output)
    assert schema_errors(data, SCHEMAS[schema_id], SCHEMAS[schema_id]) == []
    return data


def test_the_validator_catches_what_a_schema_forbids():
    data = json.loads(groupconv.explain(groupconv.ConvSpec(4, 8, 3, groups=2)).to_json())
    schema = SCHEMAS["groupconv.explain/1"]
    assert schema_errors(data, schema, schema) == []
    assert schema_errors({**data, "extra": 1}, schema, schema) == ["$: undocumented 'extra'"]
    assert schema_errors({k: v for k, v in data.items() if k != "params"}, schema, schema) == ["$: missing 'params'"]
    assert schema_errors({**data, "params": "152"}, schema, schema) == ["$.params: '152' is not of type integer"]
    assert schema_errors({**data, "schema": "groupconv.explain/2"}, schema, schema)
    assert schema_errors({**data, "spec": {**data["spec"], "padding": "full"}}, schema, schema)
    assert schema_errors({**data, "cost": {"macs": 1}}, schema, schema)


def test_every_documented_object_requires_every_field_it_lists():
    def objects(node):
        if isinstance(node, dict):
            if "properties" in node:
                yield node
            for child in node.values():
                yield from objects(child)
        elif isinstance(node, list):
            for child in node:
                yield from objects(child)

    for schema in SCHEMAS.values():
        for node in objects(schema):
            assert set(node["required"]) == set(node["properties"]) and node["additionalProperties"] is False
    assert set(SCHEMAS) == {
        "groupconv.spec/1", "groupconv.explain/1", "groupconv.diagram/1", "groupconv.summary/1", "groupconv.demo/1",
        "groupconv.tune/4", "groupconv.bench/6",
    }  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["--in", "4", "--out", "8", "--kernel", "3", "--groups", "2", "--input", "1,4,32,32"],
        ["--in", "4", "--out", "8", "--kernel", "3"],
        ["--in", "6", "--out", "12", "--kernel", "4", "--stride", "2", "--transposed", "--groups", "3", "--input",
         "1x6x16x16", "--no-bias", "--dtype", "bfloat16"],
        ["--in", "8", "--out", "8", "--kernel", "3,3,3", "--padding", "same", "--groups", "8", "--input", "2,8,4,4,4"],
        ["--in", "2", "--out", "4", "--kernel", "5", "--dims", "1", "--padding-mode", "circular", "--padding", "2"],
    ],
)  # fmt: skip
def test_explain_json_follows_its_schema(argv, capsys):
    status, out, err = run(["explain", *argv, "--json"], capsys)
    assert (status, err) == (0, "")
    data = check(out, "groupconv.explain/1")
    assert data["spec"]["in_channels"] == int(argv[1])


def test_explain_json_has_the_documents_numbers(capsys):
    _, out, _ = run(["explain", "--in", "4", "--out", "8", "--kernel", "3", "--groups", "2", "--json"], capsys)
    data = check(out, "groupconv.explain/1")
    assert data["params_without_bias"] == 144 and data["weight_shape"] == [8, 2, 3, 3]
    assert [(o["groups"], o["params"] - 8) for o in data["options"]] == [(1, 288), (2, 144), (4, 72)]
    _, out, _ = run(["explain", "--in", "3", "--out", "9", "--kernel", "3", "--groups", "3", "--json"], capsys)
    data = check(out, "groupconv.explain/1")
    assert (data["valid_groups"], data["max_groups"], data["weight_shape"]) == ([1, 3], 3, [9, 1, 3, 3])


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_diagram_json_follows_its_schema_and_the_file_exists(suffix, tmp_path, capsys):
    path = tmp_path / f"layer.{suffix}"
    argv = ["diagram", "--in", "4", "--out", "8", "--kernel", "3", "--groups", "2", "-o", str(path), "--json"]
    status, out, err = run(argv, capsys)
    assert (status, err) == (0, "")
    data = check(out, "groupconv.diagram/1")
    assert data["path"] == str(path) and data["format"] == suffix and path.stat().st_size > 10_000


def test_diagram_says_what_it_wrote(tmp_path, capsys):
    path = tmp_path / "layer.png"
    status, out, _ = run(
        ["diagram", "--in", "4", "--out", "8", "--kernel", "3", "--groups", "2", "-o", str(path)], capsys
    )
    assert status == 0
    assert out == f"wrote {path} (1680x780 px PNG): Conv2d(4, 8, kernel_size=3, groups=2)\n"


@pytest.mark.parametrize("model", ["alexnet-g4", "shufflenet", "cli_models:build"])
def test_summary_json_follows_its_schema(model, user_models, capsys):
    status, out, err = run(["summary", model, "--input", "1,4,4,4" if ":" in model else "2,1,28,28", "--json"], capsys)
    assert (status, err) == (0, "")
    data = check(out, "groupconv.summary/1")
    assert data["model"] == model and data["total_params"] == sum(row["params"] for row in data["rows"])


@pytest.mark.parametrize("command", ["summary", "tune"])
def test_json_stays_one_document_when_the_model_prints(user_models, monkeypatch, capsys, command):
    (user_models / "noisy_models.py").write_text(
        "import torch\n"
        "class Noisy(torch.nn.Conv2d):\n"
        "    def forward(self, x):\n"
        "        print('a forward')\n"
        "        return super().forward(x)\n"
        "def build():\n"
        "    print('building')\n"
        "    return torch.nn.Sequential(Noisy(4, 4, 3, groups=2))\n"
    )
    monkeypatch.delitem(sys.modules, "noisy_models", raising=False)
    monkeypatch.setenv("GROUPCONV_CACHE", str(user_models / "tune.json"))
    status, out, err = run([command, "noisy_models:build", "--input", "1,4,5,5", "--json"], capsys)
    assert status == 0 and json.loads(out)["model"] == "noisy_models:build"
    assert "building" in err and "a forward" in err


@pytest.mark.slow
def test_tune_json_follows_its_schema_and_fills_the_cache(user_models, monkeypatch, capsys):
    monkeypatch.setenv("GROUPCONV_CACHE", str(user_models / "tune.json"))
    status, out, err = run(["tune", "cli_models:build", "--input", "2,4,4,4", "--json"], capsys)
    assert (status, err) == (0, "")
    data = check(out, "groupconv.tune/4")
    assert data["cache"] == str(user_models / "tune.json") and data["cached"]
    (section,) = json.loads((user_models / "tune.json").read_text())["sections"].values()
    assert section["entries"] == {call["key"]: call["chosen"] for call in data["calls"]} and section["entries"]
    status, out, _ = run(["tune", "cli_models:build", "--input", "2,4,4,4"], capsys)
    assert status == 0 and out.endswith(f"0 calls tuned (0 layers); cached in {user_models / 'tune.json'}\n")


@pytest.mark.slow
def test_tune_says_when_nothing_could_be_cached(user_models, monkeypatch, capsys):
    monkeypatch.setenv("GROUPCONV_CACHE", os.devnull)
    status, out, _ = run(["tune", "cli_models:build", "--input", "2,4,4,4", "--json"], capsys)
    assert status == 0 and check(out, "groupconv.tune/4")["cached"] is False
    status, out, _ = run(["tune", "cli_models:build", "--input", "2,4,4,4"], capsys)
    assert status == 0 and out.endswith(f"; not cached: {os.devnull} cannot be used (it is not a regular file)\n")


def test_demo_json_follows_its_schema(capsys):
    status, out, err = run(["demo", "--in-channels", "3", "--out-channels", "9", "--json"], capsys)
    assert (status, err) == (0, "")
    data = check(out, "groupconv.demo/1")
    assert [(row["groups"], row["weight_shape"]) for row in data["rows"]] == [(1, [9, 3, 3, 3]), (3, [9, 1, 3, 3])]
    assert all(row["max_difference"] < 1e-4 for row in data["rows"])


# Errors ----------------------------------------------------------------------------------------------------------

LAYER = ["--in", "4", "--out", "8", "--kernel", "3"]  # bad arguments: tests/test_cli_errors.py


@pytest.mark.slow
def test_the_installed_command_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [Path(sys.executable).with_name("groupconv"), "explain", *LAYER, "--groups", "5", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "groupconv explain: error: groups=5 is invalid: in_channels=4 and out_channels=8 are not divisible by 5; "
        "nearest valid: 4 (valid groups: 1, 2, 4; the largest is gcd(4, 8) = 4)"
    ]


# Help and the README ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["demo", "explain", "diagram", "summary", "tune", "bench"])
def test_each_subcommand_has_help_and_json(command, capsys):
    status, out, _ = run([command, "--help"], capsys)
    assert status == 0 and out.startswith(f"usage: groupconv {command} ")
    assert re.search(r"^  --json +print JSON \(schema: docs/cli-json.md\) instead of text$", out, flags=re.M)


@pytest.mark.parametrize("command", ["demo", "explain", "diagram", "summary", "tune", "bench"])
def test_each_new_subcommand_has_help_with_examples(command, capsys):
    status, out, _ = run([command, "--help"], capsys)
    assert status == 0
    assert out.startswith(f"usage: groupconv {command} ")
    assert "--json" in out and "examples:" in out
    examples = out.split("examples:\n")[1].splitlines()
    assert examples and all(line.startswith(f"  groupconv {command} ") for line in examples)


def test_a_command_run_in_process_leaves_the_warning_format_and_streams_as_they_were(capsys):
    """main sets both while a command runs; a test suite or a program calling it keeps its own afterwards."""
    formatwarning, errors = warnings.formatwarning, sys.stdout.errors
    for argv in (["explain", "--in", "4", "--out", "8", "--kernel", "3"], ["explain", "--in", "4", "--groups", "3"]):
        run(argv, capsys)
        assert warnings.formatwarning is formatwarning and sys.stdout.errors == errors


def test_experiment_help_has_examples(capsys):
    status, out, _ = run(["experiment", "--help"], capsys)
    assert status == 0 and out.split("examples:\n")[1].startswith("  groupconv experiment groups ")


@pytest.mark.parametrize("action", ["plan", "bytes", "measure"])
def test_each_parallel_action_has_help_for_every_option_and_an_example(action, capsys):
    from groupconv.cli.main import _build_parser

    commands = next(a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    actions = next(a for a in commands.choices["parallel"]._actions if isinstance(a, argparse._SubParsersAction))
    assert all(option.help for option in actions.choices[action]._actions)
    status, out, _ = run(["parallel", action, "--help"], capsys)
    assert status == 0 and out.startswith(f"usage: groupconv parallel {action} ")
    assert out.split("examples:\n")[1].startswith(f"  groupconv parallel {action} --model ")


def test_top_level_help_lists_every_command(capsys):
    status, out, _ = run(["--help"], capsys)
    assert status == 0
    assert all(re.search(rf"^    {name}  ", out, flags=re.M) for name in ["demo", "explain", "diagram", "summary"])
    _, out, _ = run(["summary", "--help"], capsys)
    assert "alexnet, alexnet-g2, alexnet-g4, resnext," in out and "default for built-in models: 1,1,28,28" in out


def readme_blocks(language: str) -> list[str]:
    """The text of every ```language block in the README."""
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def readme_examples() -> list[tuple[list[str], str]]:
    """(argv, output) of every ```console block in the README that runs ``groupconv``."""
    blocks = [block.split("\n", 1) for block in readme_blocks("console") if block.startswith("$ groupconv ")]
    return [(command.removeprefix("$ groupconv ").split(), output) for command, output in blocks]


def readme_commands() -> list[str]:
    """Every ``groupconv`` command line of the README's ```sh blocks, its comment and any ``nice`` left off."""
    lines = [
        line.split("  #")[0].strip().removeprefix("nice -n 19 ")
        for block in readme_blocks("sh")
        for line in block.splitlines()
    ]
    return [line.removeprefix("groupconv ") for line in lines if line.startswith("groupconv ")]


def test_the_readme_shows_explain_on_the_documents_example():
    commands = [argv for argv, _ in readme_examples()]
    assert ["explain", *LAYER, "--groups", "2", "--input", "1,4,32,32"] in commands


@pytest.mark.parametrize("argv, output", readme_examples(), ids=lambda value: " ".join(value)[:40])
def test_the_readme_shows_real_output(argv, output, capsys):
    status, out, _ = run(argv, capsys)
    assert status == 0
    assert out == output


def test_the_readme_names_a_command_per_tool():
    tools = {command.split()[0] for command in readme_commands()} | {argv[0] for argv, _ in readme_examples()}
    assert tools >= {"explain", "diagram", "summary", "tune", "train", "experiment", "filters", "bench", "parallel"}


@pytest.mark.parametrize("command", readme_commands(), ids=lambda command: command[:40])
def test_the_readme_commands_are_accepted(command, monkeypatch):
    """Each command parses as written; running them (training, benchmarks) is for their own tests."""
    monkeypatch.setattr(argparse.ArgumentParser, "error", lambda _, message: pytest.fail(f"{command}: {message}"))
    parser = importlib.import_module("groupconv.cli.main")._build_parser()  # the module, not cli.main the function
    args = parser.parse_args(shlex.split(command))
    assert callable(args.run)


def test_the_readme_shows_the_demos_output(capsys):
    shown = next(block for block in readme_blocks("text") if block.startswith("$ groupconv demo\n"))
    status, out, _ = run(["demo"], capsys)
    differences = r"\d\.\d\de[-+]\d+$"  # max |groupconv - PyTorch| depends on the formulation that ran
    assert status == 0
    assert re.sub(differences, "", out, flags=re.M) == re.sub(differences, "", shown.split("\n", 1)[1], flags=re.M)


@pytest.mark.slow
def test_the_readmes_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPCONV_CACHE", str(tmp_path / "tune.json"))
    monkeypatch.chdir(tmp_path)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for block in readme_blocks("pycon"):
        runner.run(doctest.DocTestParser().get_doctest(block, {}, "README.md", "README.md", 0), out=report.append)
    assert runner.tries > 0 and runner.failures == 0, "".join(report)


def test_the_readme_shows_a_rendered_diagram():
    images = re.findall(r"!\[[^\]]*\]\((docs/images/[^)]+\.png)\)", (ROOT / "README.md").read_text())
    assert images
    for image in images:
        assert (ROOT / image).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_demo_still_prints_the_documents_example(capsys):
    status, out, _ = run(["demo"], capsys)
    lines = out.splitlines()
    assert status == 0
    assert lines[0] == (
        "Conv2d(in_channels=4, out_channels=8, kernel_size=3, bias=False) on an input of shape (1, 4, 32, 32)"
    )
    assert [line.split()[:6] for line in lines[4:7]] == [
        ["1", "[8,", "4,", "3,", "3]", "288"],
        ["2", "[8,", "2,", "3,", "3]", "144"],
        ["4", "[8,", "1,", "3,", "3]", "72"],
    ]
