"""The command line (benchmark/cli.py): the parser built from the command table without importing any command
module or torch, every command's own ``--help``, ``--quiet``, and the one error path (a user error is one line and
exit 2; anything else is a bug and keeps its traceback)."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import cli
from benchmark.commands import COMMANDS
from benchmark.errors import PoseBenchError
from benchmark.log import set_verbosity

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "pytorch_lightning", "lightning", "albumentations", "matplotlib", "cv2", "timm")


# The command line in a fresh interpreter; it reports every module loaded (sys.modules also holds the modules
# that importlib.import_module loads, which -X importtime does not list).
MODULES_AFTER = """
import json, sys
from benchmark.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("MODULES=" + json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _run(*args: str) -> tuple[str, set[str]]:
    """stdout of the command line run with ``args`` in a fresh interpreter, and the modules it loaded."""
    done = subprocess.run([sys.executable, "-c", MODULES_AFTER, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    line = next(line for line in done.stderr.splitlines() if line.startswith("MODULES="))
    return done.stdout, set(json.loads(line[len("MODULES="):]))


def _heavy(modules: set[str]) -> set[str]:
    return {module for module in modules if module.split(".")[0] in HEAVY}


def test_top_level_help_lists_every_command_and_imports_no_command_module_nor_torch() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "benchmark", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = {line.split()[0] for line in done.stdout.splitlines() if re.match(r"    \S", line)}  # help goes deeper
    assert listed == set(COMMANDS)
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "benchmark.cli" in imported and not _heavy(imported)
    out, modules = _run("--help")
    assert out == done.stdout
    assert {m for m in modules if m.startswith("benchmark.commands")} == {"benchmark.commands"}
    assert not _heavy(modules)


def test_a_command_s_help_imports_its_module_only() -> None:
    out, modules = _run("data", "--help")
    assert out.startswith("usage: python -m benchmark data") and "{synth,show,check,fetch}" in out
    commands = {m for m in modules if m.startswith("benchmark.commands")}
    assert commands == {"benchmark.commands", "benchmark.commands.data"}
    assert not _heavy(modules)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_its_functions_and_its_help(name: str, capsys) -> None:
    command = COMMANDS[name]
    module = importlib.import_module(command.module)
    assert callable(getattr(module, command.add_arguments)) and callable(getattr(module, command.run))
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m benchmark {name}")


def test_a_user_error_is_one_line_and_exit_2(monkeypatch, capsys) -> None:
    from benchmark.commands import summary

    def bad_input(names, as_json):
        raise PoseBenchError("variant 'x' is not registered")

    monkeypatch.setattr(summary, "run_summary", bad_input)
    assert cli.main(["summary"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: variant 'x' is not registered\n" and captured.out == ""


@pytest.mark.parametrize("bug", [KeyError("variant"), ValueError("bad"), FileNotFoundError("x.json"),
                                 RuntimeError("boom")], ids=lambda bug: type(bug).__name__)
def test_any_other_exception_is_a_bug_and_propagates(bug: Exception, monkeypatch) -> None:
    from benchmark.commands import summary

    def broken(names, as_json):
        raise bug

    monkeypatch.setattr(summary, "run_summary", broken)
    with pytest.raises(type(bug)) as raised:
        cli.main(["summary"])
    assert raised.value is bug


@pytest.fixture
def verbosity_restored():
    yield
    set_verbosity(quiet=False)


def test_quiet_keeps_errors_only(verbosity_restored, monkeypatch, capsys) -> None:
    from benchmark.commands import summary

    def table(names, as_json):
        if names:
            raise PoseBenchError(f"unknown variant(s) {', '.join(names)}")
        return "| a table |"

    monkeypatch.setattr(summary, "run_summary", table)
    assert cli.main(["summary"]) == 0
    assert capsys.readouterr().out == "| a table |\n"
    assert cli.main(["--quiet", "summary"]) == 0
    assert capsys.readouterr() == ("", "")
    assert cli.main(["--quiet", "summary", "--variant", "nopose-9"]) == 2
    assert capsys.readouterr() == ("", "error: unknown variant(s) nopose-9\n")
