"""--overwrite replaces only what lstmgen made there before (issue 33, item 1): never a folder
that holds a user's files, the run being read, the current folder, a file or a link."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import TINY, make_text
from test_hostile import refused

pytest.importorskip("onnx")


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under folder (relative path -> bytes): what must survive a refusal."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def parent(trained_run, tmp_path) -> Path:
    """parent/ holding notes.txt, runs/victim and runs/other: the issue's layout."""
    parent = tmp_path / "parent"
    (parent / "runs").mkdir(parents=True)
    (parent / "notes.txt").write_text("my notes\n")
    shutil.copytree(trained_run, parent / "runs" / "victim")
    shutil.copytree(trained_run, parent / "runs" / "other")
    return parent


def test_export_over_the_folder_that_holds_the_run_is_refused(parent, capsys):
    before = tree(parent)
    victim = parent / "runs" / "victim"
    refused(["export", victim, "--out", parent, "--overwrite"], capsys, str(parent), "--out")
    refused(["export", victim, "--out", parent / "runs", "--overwrite"], capsys, "holds")
    assert tree(parent) == before


def test_export_over_another_run_or_a_users_folder_is_refused(parent, tmp_path, capsys):
    victim, other = parent / "runs" / "victim", parent / "runs" / "other"
    before = tree(parent)
    refused(["export", victim, "--out", other, "--overwrite"], capsys, "not an lstmgen export")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "essay.txt").write_text("mine\n")
    refused(["export", victim, "--out", mine, "--overwrite"], capsys, "lstmgen-model.json")
    assert tree(parent) == before and tree(mine) == {"essay.txt": b"mine\n"}


def test_export_replaces_an_earlier_export_but_not_one_a_user_added_to(parent, tmp_path, capsys):
    from lstmgen.cli import main

    victim, out = parent / "runs" / "victim", tmp_path / "export"
    for _ in range(2):  # the second replaces the first
        with pytest.raises(SystemExit) as done:
            main(["export", str(victim), "--out", str(out), "--overwrite"])
        assert done.value.code in (0, None)
    assert (out / "model.onnx").is_file() and not list(tmp_path.glob(".export*"))
    (out / "notes.txt").write_text("kept\n")
    refused(["export", victim, "--out", out, "--overwrite"], capsys, "notes.txt", "did not make")
    assert (out / "notes.txt").read_text() == "kept\n"


def test_export_over_a_file_or_a_link_leaves_both_as_they_were(parent, tmp_path, capsys):
    victim = parent / "runs" / "victim"
    file = tmp_path / "file.txt"
    file.write_text("a user's file\n")
    refused(["export", victim, "--out", file, "--overwrite"], capsys, "is a file")
    assert file.read_text() == "a user's file\n" and not (tmp_path / ".file.txt.old").exists()
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    refused(["export", victim, "--out", link, "--overwrite"], capsys, "symbolic link")
    assert list(target.iterdir()) == [] and link.is_symlink()


def test_train_over_a_run_the_user_added_to_or_the_store_it_reads_is_refused(
    trained_run, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "notes.txt").write_text("kept\n")
    before = tree(run)
    flags = ["--max-steps", "2", "--hidden", "8", "--layers", "1", "--quiet"]
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(2_000))
    refused(["train", corpus, "--out", run, "--overwrite", *flags], capsys, "notes.txt")
    (run / "notes.txt").unlink()
    del before["notes.txt"]
    # its own token store, read as the source: replacing the run would delete it
    refused(["train", run / "data", "--out", run, "--overwrite", *flags], capsys, "reads")
    # a base to fine-tune from, inside the run to be replaced
    inner = run / "best"
    refused(
        ["train", corpus, "--out", run, "--overwrite", "--init-from", inner, *flags],
        capsys,
        "reads",
    )
    assert tree(run) == before


def test_train_and_prepare_refuse_the_current_folder(tmp_path, capsys, monkeypatch):
    import lstmgen

    here = tmp_path / "here"
    lstmgen.prepare([make_corpus(tmp_path)], out=here, quiet=True)
    (here / "sub").mkdir()
    monkeypatch.chdir(here / "sub")
    corpus = make_corpus(tmp_path)
    refused(["prepare", corpus, "--out", "..", "--overwrite", "--quiet"], capsys, "current")
    assert (here / "meta.json").is_file()


def make_corpus(folder: Path) -> Path:
    corpus = folder / "c.txt"
    corpus.write_text(make_text(3_000))
    return corpus


def test_prepare_replaces_its_store_only_while_it_holds_nothing_else(tmp_path, capsys):
    import lstmgen

    corpus, store = make_corpus(tmp_path), tmp_path / "store"
    lstmgen.prepare([corpus], out=store, quiet=True)
    lstmgen.prepare([corpus], out=store, overwrite=True, quiet=True)  # its own: replaced
    (store / "notes.txt").write_text("kept\n")
    refused(["prepare", corpus, "--out", store, "--overwrite", "--quiet"], capsys, "notes.txt")
    (store / "notes.txt").unlink()
    inner = store / "c.txt"
    shutil.copyfile(corpus, inner)
    refused(["prepare", inner, "--out", store, "--overwrite", "--quiet"], capsys, "reads")
    assert inner.is_file() and (store / "meta.json").is_file()


def test_train_replaces_its_own_run(tmp_path):
    import lstmgen

    corpus, run = make_corpus(tmp_path), tmp_path / "run"
    for _ in range(2):
        lstmgen.train([corpus], out=run, max_steps=2, overwrite=True, quiet=True, **TINY)
    assert (run / "model.safetensors").is_file()
    assert sorted(os.listdir(tmp_path)) == ["c.txt", "run"]


def test_tune_never_replaces_a_folder(tmp_path, capsys):
    pytest.importorskip("optuna")
    corpus, out = make_corpus(tmp_path), tmp_path / "study"
    out.mkdir()
    (out / "notes.txt").write_text("kept\n")
    refused(["tune", corpus, "--out", out, "--trial-steps", "2"], capsys, "already exists")
    assert (out / "notes.txt").read_text() == "kept\n"
