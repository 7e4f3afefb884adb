"""One name, one type, one default per concept, across every leaf command of the CLI.

Walks the typer app as click sees it and fails when a concept has two
spellings (a known synonym, or one flag with two destinations), two types or
two defaults, unless a table below says why the commands differ; and when an
option or argument has no help text.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from calibench.cli import app
from calibench.cli.options import COMMAND_DEFAULTS, SHARED
from calibench.core.settings import CommonSettings

# Old spellings of a shared concept: none may be a visible option anywhere.
SYNONYMS = {
    "max_windows": {"ppl_max_windows", "heldout_windows", "heldout_n", "proxy_windows", "windows_max", "n_windows"},
    "pool": {"reference", "reference_set", "pool_set"},
    "model": {"model_name", "checkpoint"},
    "device": {"devices"},
    "dtype": {"torch_dtype", "precision"},
    "offline": {"online"},
    "batch_size": {"batch", "bs"},
}

# One destination, two different concepts (the flag is the same word for another thing): why.
DISTINCT = {
    "bits": "compress: weight bits of a method; inspect activations: activation bits of the int8 error",
    "top_k": "vocab collect: most frequent tokens kept; inspect activations / data curate: channels or sources",
    "mode": "data build: how windows are cut; vocab prune: pruning mode; data curate: length mode",
    "heldout": "inspect activations: the int8 error's held-out text; vocab collect: texts whose coverage to report",
    "backend": "eval: lm-eval's model backend (hf, vllm); data build/generate: self-generation backend (torch, vllm)",
    "calib": "compress: the one calibration set; vocab collect: calibration sets to count (repeatable)",
    "batch_size": "data build, data generate: the self builder's generation batch (16), which changes the tokens drawn",
    "model": "inspect activations compares several models (repeatable --model)",
}

# Defaults that are the command's workload, not a shared setting: why.
PER_COMMAND = {
    "n": "windows per set: the command's workload (inspect 32, recommend 16, builders 128)",
    "seq_len": "tokens per window: the command's workload",
    "tasks": "eval's default suite; recommend's cheap full run; vocab collect counts no task unless given",
    "jobs": "demo runs on two cores by design; study run one process unless asked",
    "out": "demo writes ./demo-study by default; elsewhere --out is required or optional",
}


def leaves(command, prefix=()):
    subs = getattr(command, "commands", None)
    if not subs:
        yield " ".join(prefix), command
        return
    for name, sub in subs.items():
        yield from leaves(sub, (*prefix, name))


COMMANDS = dict(leaves(typer.main.get_command(app)))


def visible_options(command):
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden and p.name != "help"]


def effective_default(param):
    """What applies when the option is not given: its default, or the model default its help shows."""
    if param.default is None and isinstance(param.show_default, str):
        return param.show_default
    if param.default in (None, (), []):
        return None
    return str(param.default)


def annotation(param):
    """The value's Python type; a Literal is text (its choices are the model's to check)."""
    import typing

    from calibench.cli.derive import base_type

    found = base_type(getattr(getattr(param, "type_descriptor", None), "annotation", None))
    return str if typing.get_origin(found) is typing.Literal else found


def test_every_option_and_argument_has_help():
    missing = [
        f"{path} {param.name}"
        for path, command in COMMANDS.items()
        for param in command.params
        if not param.hidden and param.name != "help" and not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing, f"options without help text: {missing}"


def test_no_synonym_of_a_shared_concept_is_visible():
    found = [
        f"{path}: --{param.name.replace('_', '-')} (say --{concept.replace('_', '-')})"
        for path, command in COMMANDS.items()
        for param in visible_options(command)
        for concept, names in SYNONYMS.items()
        if param.name in names
    ]
    assert not found, f"old spellings of shared options still visible: {found}"


def test_shared_options_have_one_spelling_type_default_and_help():
    """Every command's --model, --dtype, ... is the one of CommonSettings, down to the help's first sentence."""
    seen = {}
    for path, command in COMMANDS.items():
        for param in visible_options(command):
            if param.name not in SHARED:
                continue
            if param.name in DISTINCT and path in DISTINCT[param.name]:
                continue
            seen.setdefault(param.name, []).append(path)
            field = CommonSettings.model_fields[param.name]
            assert (param.help or "").startswith(field.description), f"{path} --{param.name}: help restated"
            flags = {*param.opts, *param.secondary_opts}
            assert "--" + param.name.replace("_", "-") in flags, f"{path}: {flags}"
            if param.required:
                continue
            expected = COMMAND_DEFAULTS.get((path, param.name), (field.default, ""))[0]
            assert effective_default(param) == (None if expected is None else str(expected)), (
                f"{path} --{param.name} defaults to {param.default!r}, not {expected!r}"
            )
    for name in ("model", "dtype", "device", "max_windows", "batch_size"):
        assert len(seen.get(name, [])) >= 4, f"--{name} is shared by {seen.get(name)}"


def test_one_destination_one_flag_one_type_one_default():
    by_name: dict[str, list[tuple[str, object]]] = {}
    for path, command in COMMANDS.items():
        for param in visible_options(command):
            by_name.setdefault(param.name, []).append((path, param))
    problems = []
    for name, uses in by_name.items():
        if name in DISTINCT or len(uses) < 2:
            continue
        flags = {tuple(sorted(p.opts)) for _, p in uses}
        if len(flags) > 1:
            problems.append(f"--{name} is spelled {sorted(flags)} in {[c for c, _ in uses]}")
        types = {str(annotation(p)) for _, p in uses}
        if len(types) > 1:
            problems.append(f"--{name} has types {sorted(types)} in {[c for c, _ in uses]}")
        if name in PER_COMMAND:
            continue
        defaults = {}
        for path, param in uses:
            if not param.required:
                value = COMMAND_DEFAULTS.get((path, name), (None,))[0]
                defaults.setdefault(str(value) if (path, name) in COMMAND_DEFAULTS else "shared", set()).add(
                    effective_default(param)
                )
        shared = defaults.get("shared", set())
        if len(shared) > 1:
            problems.append(f"--{name} defaults to {sorted(map(str, shared))} across {[c for c, _ in uses]}")
    assert not problems, "\n".join(problems)


def test_command_defaults_table_is_used_and_explained():
    for (path, name), (value, why) in COMMAND_DEFAULTS.items():
        assert path in COMMANDS and why, (path, name)
        params = {p.name: p for p in COMMANDS[path].params}
        assert name in params and effective_default(params[name]) == str(value), (path, name)
        assert value != CommonSettings.model_fields[name].default, f"{path} --{name}: no override needed"


def test_hidden_options_are_deprecated_spellings():
    for path, command in COMMANDS.items():
        for param in command.params:
            if param.hidden:
                assert (param.help or "").startswith("Deprecated: use "), f"{path} {param.name} hidden without reason"


def test_method_parameters_come_from_method_params():
    """compress restates none of MethodParams' fields: each is an option with the field's help and default."""
    from calibench.compress.methods import MethodParams

    params = {p.name: p for p in COMMANDS["compress"].params}
    for name, field in MethodParams.model_fields.items():
        assert name in params, f"MethodParams.{name} has no compress option"
        assert params[name].help == field.description
        assert params[name].default is None  # not given -> the method's own default
        if field.default is not None:
            assert params[name].show_default == str(field.default)


def test_dtype_choices_are_the_loaders():
    from typing import get_args

    from calibench.core.settings import Dtype
    from calibench.models import DTYPES

    assert set(get_args(Dtype)) == set(DTYPES)


def test_study_spec_takes_the_shared_defaults():
    from calibench.study.spec import StudySpec

    for name in ("dtype", "device"):
        assert StudySpec.model_fields[name].default == CommonSettings.model_fields[name].default


@pytest.mark.parametrize(
    "args, old, new",
    [
        (
            ["recommend", "-m", "m", "--method", "w", "--candidates", "c", "--budget", "1", "-o", "o"]
            + ["--ppl-max-windows", "0"],
            "--ppl-max-windows",
            "--max-windows",
        ),
        (["data", "card", "x", "-o", "y.md", "--reference", "z"], "--reference", "--pool"),
        (["compress", "-m", "m", "-c", "c", "-o", "o", "--asym"], "--asym", "--no-symmetric"),
    ],
)
def test_deprecated_spelling_warns_once_and_maps(args, old, new, monkeypatch):
    """The wrapper maps the old spelling to the new option and says so in one stderr line."""
    from calibench.cli import derive

    lines = []
    monkeypatch.setattr(derive, "warn", lines.append)
    seen = {}

    def probe(dep, kwargs, target):
        original(dep, kwargs, target)
        seen.update(kwargs)

    original = derive._apply_deprecated
    monkeypatch.setattr(derive, "_apply_deprecated", probe)
    from typer.testing import CliRunner

    CliRunner().invoke(app, args)
    assert len(lines) == 1 and old in lines[0] and new in lines[0], lines
    field = {"--ppl-max-windows": "max_windows", "--reference": "pool", "--asym": "symmetric"}[old]
    assert seen[field] == {"max_windows": 0, "pool": Path("z"), "symmetric": False}[field]


def test_cli_start_does_not_import_torch():
    code = "import sys, calibench.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
