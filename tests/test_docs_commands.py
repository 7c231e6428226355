"""Every `$ lstmgen ...` line of README.md and docs/ runs here, so the manual cannot drift.

Each page runs in its own empty folder, its blocks in order (a page's `train` before its
`generate`), through `lstmgen.cli.main` in this process. The folder holds nothing a fresh
clone lacks (no ../shared): a page trains on the corpora the package ships (python-docs,
tiny-shakespeare) or makes its files first with a `$` line it shows. A command must exit 0,
or 2 where the page shows `lstmgen: error: ...` after it; then stderr must end with that
very line.

An HTML comment right before a fenced block says how to run it, one directive a line:

    <!-- test: skip (why) -->             not run; the reason is required
    <!-- test: OLD => NEW -->             replace OLD by NEW in the block's commands
    <!-- test: before: lstmgen ... -->    first make this command's --out (e.g. a run the block
                                          reads) from WORLD's files; made once, copied in
    <!-- test: while locked: RUN -->      run the block while another holder has RUN's lock
    <!-- test: output -->                 what each command prints must be the text shown

`$` lines of other programs run in a shell, in order, with this Python first on PATH
(`python -c "import this" > zen.txt`, `python -m lstmgen.data.corpora kinds.csv`); they must
exit 0. For `generate --interactive`, the lines shown after `> ` are what it reads.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lstmgen.cli import main
from lstmgen.data.corpora import NAMED_CORPORA
from lstmgen.files import locked

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^( *)(```+|~~~+)")
ANNOTATION = re.compile(r"^<!-- test:(.*?)-->$", re.S)


@dataclass
class Command:
    line: int  # where the page has it, for messages
    argv: str  # what follows `$ lstmgen`, with the block's swaps made (or a shell line)
    shown: list[str]  # the output lines the page shows after it
    shell: bool = False  # another program's `$` line, run in a shell


@dataclass
class Block:
    page: Path
    line: int
    commands: list[Command]
    skip: str | None = None
    swaps: list[tuple[str, str]] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)
    same_output: bool = False

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def annotate(block: Block, text: str) -> None:
    for directive in filter(None, (d.strip() for d in text.splitlines())):
        if directive.startswith("skip"):
            block.skip = directive[4:].strip(" ()")
            assert block.skip, f"{block.where}: say why the block is skipped: skip (reason)"
        elif directive.startswith("before:"):
            block.before.append(directive.removeprefix("before:").strip())
        elif directive.startswith("while locked:"):
            block.locked.append(directive.removeprefix("while locked:").strip())
        elif directive == "output":
            block.same_output = True
        elif "=>" in directive:
            old, new = (part.strip() for part in directive.split("=>", 1))
            block.swaps.append((old, new))
        else:
            raise AssertionError(f"{block.where}: unknown test directive {directive!r}")


def blocks(page: Path) -> list[Block]:
    """The page's fenced blocks that hold `$ lstmgen` lines, with their annotations."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, pending, i = [], None, 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("<!-- test:"):
            start = i
            while not lines[i].rstrip().endswith("-->"):
                i += 1
            pending = ANNOTATION.match("\n".join(x.strip() for x in lines[start : i + 1]))
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if not fence:
            if stripped:
                pending = None  # an annotation belongs to the block right after it
            i += 1
            continue
        indent, mark = len(fence.group(1)), fence.group(2)
        body, i = [], i + 1
        while i < len(lines) and not lines[i].strip().startswith(mark):
            body.append(lines[i][indent:])
            i += 1
        block = Block(page, i - len(body), commands(body, i - len(body)))
        if pending:
            annotate(block, pending.group(1))
        if block.commands:
            found.append(block)
        elif pending:
            raise AssertionError(f"{block.where}: a test annotation on a block with no commands")
        pending, i = None, i + 1
    return found


def commands(body: list[str], first_line: int) -> list[Command]:
    found: list[Command] = []
    current = None
    for n, line in enumerate(body):
        if line.startswith("$ "):
            current = None
            if line.startswith("$ lstmgen "):
                current = Command(first_line + n + 1, line.removeprefix("$ lstmgen "), [])
                found.append(current)
            else:  # another program: a page making the file its commands read
                found.append(Command(first_line + n + 1, line[2:], [], shell=True))
        elif current is not None:
            current.shown.append(line)
    return found


def run(argv: list[str], capsys, stdin: str | None = None) -> tuple[int, str, str]:
    """`lstmgen ARGV` in this process: its exit code, stdout and stderr."""
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return code, out, err


def run_shell(block: Block, command: Command) -> None:
    """Another program's `$` line, as a user's shell runs it, with this Python as `python`."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    done = subprocess.run(
        command.argv, shell=True, capture_output=True, text=True, env={**os.environ, "PATH": path}
    )
    where = f"{block.page.relative_to(ROOT)}:{command.line}: {command.argv}"
    assert done.returncode == 0, f"{where}\nexited {done.returncode}:\n{done.stderr}"


def check(block: Block, command: Command, capsys) -> None:
    if command.shell:
        run_shell(block, command)
        return
    argv = command.argv
    for old, new in block.swaps:
        argv = argv.replace(old, new)
    typed = [x[2:] for x in command.shown if x.startswith("> ") and x != "> ^D"]
    stdin = "\n".join(typed) + "\n" if "--interactive" in argv else None
    code, out, err = run(shlex.split(argv), capsys, stdin)
    where = f"{block.page.relative_to(ROOT)}:{command.line}: lstmgen {argv}"
    errors = [x for x in command.shown if x.startswith("lstmgen: error:")]
    if errors:
        said = err.strip().splitlines()
        assert code == 2 and said and said[-1] == errors[-1], (
            f"{where}\nexpected exit 2 and: {errors[-1]}\ngot exit {code} and:\n{err}"
        )
        return
    assert code == 0, f"{where}\nexited {code}:\n{err}"
    if block.same_output:
        assert out.splitlines() == command.shown, f"{where}\nprinted:\n{out}"


@pytest.fixture(scope="session")
def made_before(tmp_path_factory):
    """`before:` commands run once each: command -> the folder it ran in."""
    return {}


def make_before(block: Block, setup: str, made_before, tmp_path_factory, capsys) -> None:
    """Copy the --out of `setup` into the current folder, running setup the first time."""
    argv = shlex.split(setup.removeprefix("lstmgen "))
    out = argv[argv.index("--out") + 1]
    if setup not in made_before:
        folder = tmp_path_factory.mktemp("before")
        here = Path.cwd()
        os.chdir(folder)
        try:
            code, _, err = run(argv, capsys)
        finally:
            os.chdir(here)
        assert code == 0, f"{block.where}: before: {setup}\nexited {code}:\n{err}"
        made_before[setup] = folder
    shutil.copytree(made_before[setup] / out, out, symlinks=True)


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=page_id)
def test_page_commands_run(page, tmp_path, monkeypatch, capsys, made_before, tmp_path_factory):
    monkeypatch.chdir(tmp_path)
    # The shipped tiny-shakespeare's first 20 kB: the pages' commands name it as a user does,
    # at the cost of a tiny corpus (its BPE fit alone takes a minute on all 1.1 MB).
    head = next(NAMED_CORPORA["tiny-shakespeare"]())[:20_000]
    monkeypatch.setitem(NAMED_CORPORA, "tiny-shakespeare", lambda: iter([head]))
    for block in blocks(page):
        if block.skip:
            continue
        for old, _ in block.swaps:
            assert any(old in c.argv for c in block.commands if not c.shell), (
                f"{block.where}: no command of the block has {old!r} to replace"
            )
        for setup in block.before:
            make_before(block, setup, made_before, tmp_path_factory, capsys)
        with contextlib.ExitStack() as held:
            for run_dir in block.locked:
                held.enter_context(locked(tmp_path / run_dir))
            for command in block.commands:
                check(block, command, capsys)


def test_annotations_are_read_as_written(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- test:\nbefore: lstmgen train a.txt --out runs/a\n--epochs 9 => --max-steps 2\n-->\n"
        "```console\n$ lstmgen train a.txt --out runs/b --epochs 9\nsome output\n"
        "$ python -c pass\n$ lstmgen info runs/b\n```\n\n"
        "<!-- test: skip (a reason) -->\n\nprose between\n\n"
        "```console\n$ lstmgen info runs/a\n```\n\n"
        "- in a list:\n\n  <!-- test: skip (indented) -->\n"
        "  ```console\n  $ lstmgen info x\n  ```\n",
        encoding="utf-8",
    )
    first, second, third = blocks(page)
    assert first.before == ["lstmgen train a.txt --out runs/a"]
    assert first.swaps == [("--epochs 9", "--max-steps 2")]
    assert [(c.argv, c.shell) for c in first.commands] == [
        ("train a.txt --out runs/b --epochs 9", False),
        ("python -c pass", True),
        ("info runs/b", False),
    ]
    assert first.commands[0].shown == ["some output"]
    assert second.skip is None  # prose came between the annotation and the block
    assert third.skip == "indented" and third.commands[0].argv == "info x"
