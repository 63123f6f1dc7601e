"""The docs (README.md and docs/): the site builds with `mkdocs build --strict` (every page in the
nav, no broken link or anchor), every command they show users is run by a test, every extra they
install exists, and the launcher's options table is the launcher's own.

A fenced block of commands (```bash) is preceded by a marker naming what runs them:

    <!-- tested by tests/entry_points/test_quickstart.py::test_readme_first_run_ends_by_itself_then_evaluate_and_plot -->

(several, comma-separated; `.ci/run` for the set-up and test commands CI runs). Each command must be
found in a named test: its program (for `python -m asyncrl.train`, the module `asyncrl.train` or
`train.main(`; for `python examples/x.py`, `x.py`) and every `--flag` it gives, loosely: a test that
runs the command with extra tiny-run flags, or other values, counts.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

from helpers import REPO

from asyncrl.launcher.cli import options_markdown

TESTS = REPO / "tests"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Written by tools from code (python -m asyncrl.config.docs --write, python -m
# asyncrl.envs.conformance --write=docs/conformance.md): what they show is generated, not typed.
GENERATED = {"parameters.md", "conformance.md"}
COMMAND_FENCES = {"bash", "sh", "shell", "console"}
MARKER = re.compile(r"<!-- tested by (.+?) -->")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
# Where a command outside a command block would escape the check.
COMMAND_LINE = re.compile(r"^\s*(\$ |python3? (-m asyncrl|examples/)|pip install )")
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*)")  # not a placeholder such as --PARAM
EXTRA = re.compile(r"pip install (?:-e )?['\"]?(?:\.|asyncrl)\[([\w,-]+)\]")
SHELL_SETUP = {".", "source", "cd", "export"}  # set-up of the shell, not a command under test


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    marker: str | None  # what the `tested by` marker names


def code_blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, ticks, language = fence.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(ticks)),
                   len(lines))
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.fullmatch(before)
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip()
                         for line in lines[i + 1:end])
        blocks.append(Block(page, i + 1, language, body, marker.group(1) if marker else None))
        i = end + 1
    return blocks


def commands(text: str) -> list[list[str]]:
    """The commands of a block: continuation lines joined, comments dropped, split at && and ;
    (not at |: a usage line's `[--x=a|b]` is one command)."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&")
        lexer.whitespace_split = True
        command: list[str] = []
        for token in [*lexer, ";"]:
            if token in (";", "&&", "&"):
                if command:
                    found.append(command)
                command = []
            else:
                command.append(token)
    return found


def keys(command: list[str]) -> list[re.Pattern] | None:
    """What a test must contain to run `command` (any one of them); None: shell set-up."""
    if command[0] == "exec":
        command = command[1:]
    program = command[0].rsplit("/", 1)[-1]
    if program in SHELL_SETUP:
        return None
    if program in ("python", "python3"):
        if command[1] == "-m":
            # `python -m asyncrl.enjoy` as a subprocess, or in-process: `enjoy.evaluate(`
            module = command[2]
            short = module.rsplit(".", 1)[-1]
            return [re.compile(re.escape(module)), re.compile(rf"\b{re.escape(short)}\.\w+\(")]
        return [re.compile(re.escape(Path(command[1]).name))]
    # `mkdocs build` typed, or ["mkdocs", "build"] in a test
    words = [re.escape(w) for w in [program, *command[1:]][:2] if not w.startswith("-")]
    return [re.compile(r"\W+".join(words))]


@lru_cache(maxsize=None)
def definitions(file: Path) -> tuple[list[str], dict[str, ast.stmt], dict[str, tuple[Path, str]]]:
    """A test module's lines; its top-level functions, classes, constants and imports by name
    (an import stands for what it brings: `from asyncrl.launcher.cli import main`); and the names
    it imports from the helper modules of tests/helpers/ (`from helpers.training_process import start`)."""
    source = file.read_text()
    top: dict[str, ast.stmt] = {}
    helpers: dict[str, tuple[Path, str]] = {}  # name here -> (helper module, name there)
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            top[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            top.update({t.id: node for t in targets if isinstance(t, ast.Name)})
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            top.update({(a.asname or a.name).split(".")[0]: node for a in node.names})
            helper = TESTS / f"{str(getattr(node, 'module', None)).replace('.', '/')}.py"
            if isinstance(node, ast.ImportFrom) and helper.is_file():
                helpers.update({a.asname or a.name: (helper, a.name) for a in node.names})
    return source.splitlines(), top, helpers


@lru_cache(maxsize=None)
def source_of(reference: str) -> str:
    """The source of `tests/file.py::test_name` (decorators included) and of the helpers and
    constants it uses, from its module or a helper module of tests/helpers/ (a test often runs its
    command through a `start(...)` helper or a `TINY` list of flags); or a whole script
    (`.ci/run`)."""
    path, _, name = reference.strip().partition("::")
    file = REPO / path
    if not file.is_file():
        raise LookupError(f"{path} does not exist")
    if not name:
        if file.suffix == ".py":
            raise LookupError(f"{reference}: name the test (file.py::test_name)")
        return file.read_text()
    if not isinstance(definitions(file)[1].get(name), ast.FunctionDef):
        raise LookupError(f"{path} has no test {name}")
    parts, seen, todo = [], set(), [(file, name)]
    while todo:
        where, wanted = todo.pop()
        lines, top, helpers = definitions(where)
        if wanted in helpers and helpers[wanted] not in seen:
            seen.add(helpers[wanted])
            todo.append(helpers[wanted])
        node = top.get(wanted)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        parts.append("\n".join(lines[first - 1:node.end_lineno]))
        todo += [(where, n.id) for n in ast.walk(node) if isinstance(n, ast.Name)]
    return "\n".join(parts)


def uncovered(block: Block) -> list[str]:
    """Why the block's commands are not run by the tests its marker names."""
    where = f"{block.page.relative_to(REPO)}:{block.line}"
    if block.marker is None:
        return [f"{where}: a command block without a '<!-- tested by ... -->' marker"]
    try:
        texts = [source_of(ref) for ref in block.marker.split(",")]
    except LookupError as e:
        return [f"{where}: {e}"]
    problems = []
    for command in commands(block.text):
        wanted = keys(command)
        if wanted is None:
            continue
        running = [t for t in texts if any(k.search(t) for k in wanted)]
        line = " ".join(command)
        name = wanted[0].pattern.replace("\\", "")
        if not running:
            problems.append(f"{where}: no named test runs {name} ({line})")
            continue
        for flag in FLAG.findall(line):
            if not any(flag in t for t in running):
                problems.append(f"{where}: no named test that runs {name} gives --{flag}")
        if Path(command[0]).name == "pip":
            problems += [f"{where}: no named test installs {arg}" for arg in command[2:]
                         if not arg.startswith("-") and not EXTRA.search(f"pip install {arg}")
                         and not any(arg in t for t in running)]
    return problems


def test_every_command_block_is_run_by_the_tests_its_marker_names():
    problems = []
    for page in PAGES:
        if page.name in GENERATED:
            continue
        for block in code_blocks(page):
            if block.language in COMMAND_FENCES:
                problems += uncovered(block)
            else:
                problems += [f"{page.relative_to(REPO)}:{block.line}: a command in a "
                             f"'{block.language or 'plain'}' block (put it in a bash block with "
                             f"its test): {line.strip()}"
                             for line in block.text.splitlines() if COMMAND_LINE.match(line)]
    assert not problems, "\n".join(problems)


def test_the_check_finds_uncovered_commands():
    page = REPO / "README.md"
    train = "python -m asyncrl.train --env=CartPole-v1 --experiment=x"
    run_by = "tests/entry_points/test_quickstart.py::test_readme_first_run_ends_by_itself_then_evaluate_and_plot"
    assert uncovered(Block(page, 1, "bash", train, run_by)) == []
    assert "without a" in uncovered(Block(page, 1, "bash", train, None))[0]
    assert "gives --seed" in uncovered(Block(page, 1, "bash", train + " --seed=1", run_by))[0]
    assert "no named test runs asyncrl.launch" in uncovered(
        Block(page, 1, "bash", "python -m asyncrl.launch --run=s.py", run_by))[0]
    assert "has no test test_nothing" in uncovered(
        Block(page, 1, "bash", train, "tests/entry_points/test_quickstart.py::test_nothing"))[0]
    assert commands("a --x=1 \\\n  --y 2  # note\nb && c; . venv/bin/activate") == [
        ["a", "--x=1", "--y", "2"], ["b"], ["c"], [".", "venv/bin/activate"]]


def pyproject_extras() -> dict[str, list[str]]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_documented_extras_exist_and_ci_installs_them():
    """Every `pip install -e '.[extra]'` or `pip install 'asyncrl[extra]'` of the docs names an
    extra of pyproject.toml; those in command blocks are part of the `test` extra, which CI
    installs."""
    extras = pyproject_extras()
    for page in PAGES:
        for names in EXTRA.findall(page.read_text()):
            for name in names.split(","):
                assert name in extras, f"{page.name}: pip install of an unknown extra {name}"
        for block in code_blocks(page):
            if block.language not in COMMAND_FENCES:
                continue
            for names in EXTRA.findall(block.text):
                for name in names.split(","):
                    missing = set(extras[name]) - set(extras["test"])
                    assert not missing, f"{page.name}:{block.line}: CI does not install {missing}"


def test_readme_links_point_at_files_that_exist():
    text = (REPO / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if "://" not in t]
    assert targets, "the README links into the docs"
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_stays_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


def test_sweeps_page_lists_every_launcher_option():
    assert options_markdown() in (REPO / "docs" / "sweeps.md").read_text()


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(REPO / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # its banner, not ours
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").exists()
