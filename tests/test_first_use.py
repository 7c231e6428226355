"""What a newcomer meets first (issue 34): the server's answers to a chat client and a browser,
and the small print of training and generating."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_chat_completions_say_that_this_server_serves_completions(trained_run):
    from fastapi.testclient import TestClient

    from lstmgen.serve import create_app

    with TestClient(create_app([trained_run])) as http:
        reply = http.post("/v1/chat/completions", json={"messages": []})
        error = reply.json()["error"]
        assert reply.status_code == 404 and error["type"] == "not_found_error"
        assert "/v1/completions" in error["message"] and "completions only" in error["message"]


@pytest.mark.parametrize("page", ["serve/static/index.html", "export/static/index.html"])
def test_the_pages_name_their_icon_so_browsers_ask_for_no_favicon(page):
    html = (ROOT / "src" / "lstmgen" / page).read_text(encoding="utf-8")
    assert '<link rel="icon"' in html


def fake_trainer(step: int):
    """What RunReporter.on_eval reads of a trainer."""
    from types import SimpleNamespace

    from lstmgen.training.progress import Progress

    progress = Progress()
    progress.step = step
    return SimpleNamespace(
        progress=progress,
        steps_per_epoch=100,
        val_tokens=[0] * 50_000,
        optimizer=SimpleNamespace(param_groups=[{"lr": 0.01}]),
        config=SimpleNamespace(batch_size=4, seq_len=8),
        peers=SimpleNamespace(size=1),
        fraction_done=lambda: 0.5,
        average=SimpleNamespace(active=False),  # no weight average yet
    )


def step_lines(tmp_path, evaluations) -> list[str]:
    import io

    from rich.console import Console

    from lstmgen.training.report import RunReporter

    out = io.StringIO()
    reporter = RunReporter(tmp_path, sampler=None, console=Console(file=out, width=300))
    reporter.curves.draw = lambda *a, **k: None  # no picture needed here
    for step, nats, sample in evaluations:
        reporter.on_eval(fake_trainer(step), nats, False, sample_tokens=sample)
    return out.getvalue().splitlines()


def test_a_step_line_rounds_its_bits_per_char_once_as_the_closing_line_does(tmp_path):
    import math

    nats = 2.097548 * math.log(2)  # 2.09755 rounded to 5 places, 2.0975 to 4
    (line,) = step_lines(tmp_path, [(4506, nats, None)])
    assert line.startswith("step 4,506 ") and "= 2.0975 bpc" in line, line


def test_step_lines_label_a_sample_of_the_held_out_text_apart_from_all_of_it(tmp_path):
    sample, whole = step_lines(tmp_path, [(10, 1.5, 4_096), (20, 1.4, None)])
    assert "held-out sample (4,096 tokens)" in sample and "held-out (all)" not in sample
    assert "held-out (all) 1.4000 nats/token" in whole and "sample" not in whole


def test_curves_draw_the_sampled_and_the_whole_held_out_figures_as_two_series(
    tmp_path, monkeypatch
):
    import json

    from matplotlib.axes import Axes

    from lstmgen.plot import plot_runs

    rows = [
        {"step": s, "elapsed_s": s, "tokens": 100 * s, "val_bpc": bpc, "train_bpc": None}
        | ({"val_sample": True} if sampled else {})
        for s, bpc, sampled in [(1, 3.05, True), (2, 3.0, False), (3, 2.55, True), (4, 2.5, False)]
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    drawn, plot = [], Axes.plot

    def recorded(self, *args, **kwargs):
        drawn.append(tuple(args[1]) if len(args) > 1 else ())
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", recorded)
    assert plot_runs([tmp_path], tmp_path / "curves.png")
    held_out = [ys for ys in drawn if ys and ys[0] in (3.05, 3.0)]
    assert sorted(held_out) == [(3.0, 2.5), (3.0, 2.5), (3.05, 2.55), (3.05, 2.55)]


def test_a_sample_of_nothing_but_blanks_says_so():
    from lstmgen.training.report import readable

    assert readable("def f():\n    pass", 0.2) == "def f():\n    pass"
    said = readable("  \n" * 60, 0.2)
    assert said.startswith("(only whitespace: 120 spaces, 60 newlines") and "0.2" in said


def test_an_interrupted_run_says_its_step_with_the_thousands_separator():
    from types import SimpleNamespace

    from lstmgen.errors import TrainingInterrupted

    stopped = TrainingInterrupted(SimpleNamespace(steps=4506, run_dir="runs/x"))
    assert "saved at step 4,506." in str(stopped)


def test_generate_help_says_many_samples_run_in_batches(capsys):
    from test_cli import run_cli

    code, out, _ = run_cli(["generate", "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0 and "as one batch" not in text and "in batches" in text


def test_the_install_pages_name_the_export_extra():
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert "'.[serve,export]'" in page and "`export` (" in page


def test_train_page_says_the_ten_epochs_apply_only_without_a_limit():
    page = " ".join((ROOT / "docs" / "commands" / "train.md").read_text().split())
    assert "`--epochs` (default 10)" not in page
    said = "with none of `--epochs`, `--max-time` and `--max-steps`, it stops after 10 epochs"
    assert said in page


def test_a_folder_with_pycache_says_its_binary_files_in_one_line(tmp_path, capsys):
    from lstmgen.data.sources import resolve_sources

    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n", encoding="utf-8")
    for i in range(12):
        (tmp_path / "pkg" / "__pycache__" / f"m{i}.cpython-311.pyc").write_bytes(b"\xa7\r\r\n\0\0")
    sources = resolve_sources([str(tmp_path)], spool_dir=tmp_path / "spool")
    assert [s.name for s in sources] == [str(tmp_path / "pkg" / "mod.py")]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "skipped 12 files that look binary" in lines[0]
    assert "--exclude '*.pyc'" in lines[0]


def test_many_source_files_hold_out_whole_files_spread_over_them(tmp_path, capsys):
    import lstmgen
    from conftest import make_text

    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(30):  # one file twice the others: too large for 4 in the held-out share
        (folder / f"m{i:02d}.py").write_text(make_text(2_000 if i == 29 else 1_000, seed=i))
    meta = lstmgen.prepare([folder], out=tmp_path / "store")
    assert meta["split"] == "documents" and meta["val_documents"] >= 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "held out: " in line and "whole documents spread over the 30 documents" in line


def test_the_split_help_says_what_many_documents_are(capsys):
    from test_cli import run_cli

    code, out, _ = run_cli(["prepare", "--help"], capsys)
    assert code == 0 and "20 or more documents" in " ".join(w for w in out.split() if w != "│")


FAKE_NPM = """#!/bin/sh
# npm install --prefix DIR onnxruntime-web@VERSION, as npm lays it out
echo "$@" > "$(dirname "$0")/args.txt"
[ -n "$NPM_FAILS" ] && { echo "npm error network request failed" >&2; exit 1; }
dist="$3/node_modules/onnxruntime-web/dist"
mkdir -p "$dist"
for f in ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm; do
  echo runtime > "$dist/$f"
done
"""


@pytest.fixture
def no_runtime_here(tmp_path, monkeypatch):
    """No onnxruntime-web anywhere lstmgen looks; a fake npm in bin/ (on PATH only if asked)."""
    import lstmgen.export.web as web

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(web, "REPO", tmp_path)
    monkeypatch.delenv(web.RUNTIME_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(FAKE_NPM)
    (bin_dir / "npm").chmod(0o755)
    return bin_dir


def test_web_export_fetches_onnxruntime_web_with_npm_and_says_so(
    trained_run, no_runtime_here, tmp_path, monkeypatch, capsys
):
    import os

    from lstmgen.export import export
    from lstmgen.export.web import RUNTIME_VERSION

    monkeypatch.setenv("PATH", f"{no_runtime_here}{os.pathsep}{os.environ['PATH']}")
    export(trained_run, out=tmp_path / "web", format="web")
    args = (no_runtime_here / "args.txt").read_text().split()
    cache = tmp_path / "cache" / "lstmgen" / f"onnxruntime-web-{RUNTIME_VERSION}"
    assert args == ["install", "--prefix", str(cache), f"onnxruntime-web@{RUNTIME_VERSION}"]
    assert (tmp_path / "web" / "ort" / "ort.wasm.min.js").read_text() == "runtime\n"
    said = capsys.readouterr().err
    assert f"npm install --prefix {cache} onnxruntime-web@{RUNTIME_VERSION}" in said
    (no_runtime_here / "args.txt").unlink()  # the second export finds it in the cache
    export(trained_run, out=tmp_path / "web2", format="web")
    assert not (no_runtime_here / "args.txt").exists()


def test_web_export_without_npm_or_network_says_what_it_needs_in_one_line(
    trained_run, no_runtime_here, tmp_path, monkeypatch
):
    import os

    from lstmgen.errors import LstmgenError
    from lstmgen.export import export

    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(LstmgenError, match="npm .*is not installed.*--runtime-url"):
        export(trained_run, out=tmp_path / "web", format="web")
    monkeypatch.setenv("PATH", f"{no_runtime_here}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("NPM_FAILS", "1")
    with pytest.raises(LstmgenError, match="npm could not install .*network request failed"):
        export(trained_run, out=tmp_path / "web", format="web")
    assert not (tmp_path / "web").exists()


def test_tiny_shakespeare_is_built_in_whole():
    import hashlib

    from lstmgen.data.corpora import NAMED_CORPORA

    (text,) = list(NAMED_CORPORA["tiny-shakespeare"]())
    assert text.startswith("First Citizen:\n") and len(text) == 1_115_394
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert digest == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def test_the_kinds_table_has_two_kinds_and_its_held_out_file_other_texts(tmp_path):
    import csv

    from lstmgen.data.corpora import kinds_table

    held_out = kinds_table(tmp_path / "kinds.csv", rows=30, held_out=5)
    rows = list(csv.DictReader((tmp_path / "kinds.csv").read_text("utf-8").splitlines()))
    other = list(csv.DictReader(held_out.read_text("utf-8").splitlines()))
    assert sorted(r["kind"] for r in rows) == ["docs"] * 30 + ["play"] * 30
    assert len(other) == 10 and not {r["text"] for r in other} & {r["text"] for r in rows}


def test_the_python_examples_name_only_what_a_clone_has():
    import re

    from lstmgen.data.corpora import NAMED_CORPORA

    for page in (ROOT / "README.md", ROOT / "docs" / "python-api.md"):
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"```python\n(.*?)```", text, re.S):
            for name in re.findall(r"\[\"([^\"]+)\"\],\s*out=", block):
                made = f"python -m lstmgen.data.corpora {name}" in block
                assert name in NAMED_CORPORA or made, f"{page.name} names {name}: a clone lacks it"
