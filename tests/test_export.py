"""lstmgen export: the ONNX graph gives PyTorch's logits and greedy text at every level, batch 1
and 8; the web page gives Python's greedy text in headless Chromium; int8; bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lstmgen
from conftest import TINY, make_text

onnx = pytest.importorskip("onnx", reason="needs the export extra: pip install 'lstmgen[export]'")
pytest.importorskip("onnxruntime", reason="needs the export extra: pip install 'lstmgen[export]'")

from lstmgen.export import export  # noqa: E402
from lstmgen.export.generate import onnx_samples  # noqa: E402
from lstmgen.export.onnx import OnnxModel  # noqa: E402

STEPS = 500
TOLERANCE = 1e-4


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lstmgen", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def char_onnx(trained_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "char"
    export(trained_run, out=out)
    return out


def max_logit_gap(model, graph: OnnxModel, batch: int, conditions=None) -> float:
    """The largest |PyTorch − onnxruntime| logit over STEPS single steps and one STEPS-long call,
    both from the same random state."""
    rng = np.random.default_rng(batch)
    ids = rng.integers(1, model.tokenizer.vocab_size, (batch, STEPS))
    state = [rng.standard_normal(s.shape).astype(np.float32) * 0.5 for s in graph.zero_state(batch)]
    torch_state = tuple(torch.from_numpy(s) for s in state)
    torch_state = torch_state if len(state) == 2 else torch_state[0]
    given = None if conditions is None else torch.from_numpy(conditions)
    with torch.no_grad():
        whole, _, _ = model.module(torch.from_numpy(ids), torch_state, conditions=given)
        logits, _ = graph.run(ids, state, conditions)
        gap = float(np.abs(whole.numpy() - logits).max())
        onnx_state = state
        for t in range(STEPS):
            step = torch.from_numpy(ids[:, t : t + 1])
            ours, _, torch_state = model.module(step, torch_state, conditions=given)
            theirs, onnx_state = graph.run(ids[:, t : t + 1], onnx_state, conditions)
            gap = max(gap, float(np.abs(ours.numpy() - theirs).max()))
    return gap


def check_parity(run: Path, out: Path, prime: str, condition=None) -> None:
    """Logits within TOLERANCE at batch 1 and 8; greedy text equals lstmgen's."""
    model = lstmgen.load(run, device="cpu")
    graph = OnnxModel(out / "model.onnx")
    for batch in (1, 8):
        # a conditioned model: each row's conditions drawn (a batch of mixed values)
        conditions = model.condition_rows(None, batch, seed=batch)
        gap = max_logit_gap(model, graph, batch, conditions)
        print(f"{run.name}: batch {batch}, {STEPS} steps: max |logit gap| {gap:.2e}")
        assert gap < TOLERANCE
    ours = model.generate(prime, temperature=0, length=120, condition=condition, seed=0)
    theirs = onnx_samples(graph, model, prime, temperature=0, length=120, condition=condition)
    assert theirs[0] == ours and len(ours) > 0


def test_the_onnx_folder_holds_a_checked_graph_its_tokenizer_and_settings(char_onnx, trained_run):
    assert sorted(p.name for p in char_onnx.iterdir()) == [
        "lstmgen-model.json",
        "model.onnx",
        "tokenizer.json",
    ]
    onnx.checker.check_model(str(char_onnx / "model.onnx"))
    graph = onnx.load(str(char_onnx / "model.onnx"))
    assert [i.name for i in graph.graph.input] == ["ids", "h0", "c0"]
    assert [o.name for o in graph.graph.output] == ["logits", "h", "c"]
    manifest = json.loads((char_onnx / "lstmgen-model.json").read_text(encoding="utf-8"))
    model = lstmgen.load(trained_run)
    assert manifest["level"] == "char" and manifest["vocab_size"] == model.tokenizer.vocab_size
    assert manifest["tokens"][1:] == model.tokenizer.chars
    assert manifest["held_out_bits_per_char"] > 0 and manifest["conditions"] is None
    assert (char_onnx / "tokenizer.json").read_bytes() == (
        trained_run / "tokenizer.json"
    ).read_bytes()


def test_char_logits_and_greedy_text_match_pytorch(char_onnx, trained_run):
    check_parity(trained_run, char_onnx, "The cat ")


def test_greedy_text_equals_lstmgen_generate_at_temperature_0(char_onnx, trained_run):
    done = cli(
        "generate", str(trained_run), "--prime", "The dog", "--temperature", "0", "--length", "150"
    )
    assert done.returncode == 0, done.stderr
    model = lstmgen.load(trained_run, device="cpu")
    graph = OnnxModel(char_onnx / "model.onnx")
    text = onnx_samples(graph, model, "The dog", temperature=0, length=150)[0]
    assert done.stdout.rstrip("\n").endswith(text.rstrip("\n"))
    assert text.strip() and text.rstrip("\n") in done.stdout


# ----- word and BPE levels, a GRU, a conditioned model ---------------------------------------
def train_tiny(root: Path, name: str, **options) -> Path:
    corpus = root / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(make_text(30_000), encoding="utf-8")
    lstmgen.train([corpus], out=root / name, epochs=1, quiet=True, **{**TINY, **options})
    return root / name


def conditioned_run(root: Path) -> Path:
    rows = [
        {"stars": str(1 + i % 3), "text": make_text(300, seed=i) + " " + "!?."[i % 3] * 3}
        for i in range(120)
    ]
    table = root / "reviews.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["stars", "text"])
        writer.writeheader()
        writer.writerows(rows)
    lstmgen.train(
        [table],
        out=root / "conditioned",
        column="text",
        condition_column=["stars"],
        epochs=1,
        quiet=True,
        **TINY,
    )
    return root / "conditioned"


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, options",
    [
        ("word", {"level": "word"}),
        ("bpe", {"level": "bpe", "vocab_size": 300}),
        ("gru", {"cell": "gru", "layers": 2}),
    ],
)
def test_other_levels_and_cells_match_pytorch(tmp_path, name, options):
    run = train_tiny(tmp_path, name, **options)
    export(run, out=tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "lstmgen-model.json").read_text(encoding="utf-8"))
    assert manifest["level"] == options.get("level", "char")
    check_parity(run, tmp_path / "out", "The cat sat")


@pytest.mark.slow
def test_a_conditioned_model_takes_its_conditions_as_an_input(tmp_path):
    run = conditioned_run(tmp_path)
    export(run, out=tmp_path / "out")
    graph = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert [i.name for i in graph.graph.input] == ["ids", "h0", "c0", "conditions"]
    manifest = json.loads((tmp_path / "out" / "lstmgen-model.json").read_text(encoding="utf-8"))
    assert manifest["conditions"]["columns"][0]["values"] == ["1", "2", "3"]
    check_parity(run, tmp_path / "out", "The dog", condition={"stars": "3"})


# ----- the web page in headless Chromium -----------------------------------------------------
def browser_or_skip() -> None:
    from lstmgen.export import browser
    from lstmgen.export.web import find_runtime

    why = browser.missing()
    if why:
        pytest.skip(why)
    if find_runtime(None) is None:
        pytest.skip(
            "onnxruntime-web is not installed (.ci/run installs it: "
            "npm install --prefix build/npm onnxruntime-web)"
        )


def test_the_web_folder_loads_the_runtime_from_a_url_when_asked(trained_run, tmp_path):
    url = "https://cdn.jsdelivr.net/npm/onnxruntime-web@1.31.1/dist/"
    export(trained_run, out=tmp_path / "web", format="web", runtime_url=url)
    html = (tmp_path / "web" / "index.html").read_text(encoding="utf-8")
    assert f'src="{url}ort.wasm.min.js"' in html and not (tmp_path / "web" / "ort").exists()


@pytest.mark.slow
def test_greedy_text_in_the_browser_equals_pythons(trained_run, tmp_path):
    browser_or_skip()
    from lstmgen.export import browser

    export(trained_run, out=tmp_path / "web", format="web")
    model = lstmgen.load(trained_run, device="cpu")
    with browser.page(tmp_path / "web") as page:
        for prime in ("The cat ", "Über"):  # a character the model never saw, too
            text, chars_per_s = page.generate(prime, temperature=0, length=200)
            assert text == model.generate(prime, temperature=0, length=200)
            assert chars_per_s > 0
        # the filters: top-k 1 and a tiny top-p leave only the likeliest token
        greedy = model.generate("", temperature=0, length=100)
        assert page.generate("", temperature=1, top_k=1, length=100, seed=1)[0] == greedy
        assert page.generate("", temperature=1, top_p=0.001, length=100, seed=2)[0] == greedy
        # seeded sampling: the page's own generator, the same text for the same seed
        first = page.generate("The ", temperature=1.5, length=150, seed=7)[0]
        assert page.generate("The ", temperature=1.5, length=150, seed=7)[0] == first
        assert page.generate("The ", temperature=1.5, length=150, seed=8)[0] != first
        page.screenshot(tmp_path / "export-page.png")
        if os.environ.get("LSTMGEN_EXPORT_SCREENSHOT"):  # docs/export-page.png for the manual
            page.screenshot(Path(os.environ["LSTMGEN_EXPORT_SCREENSHOT"]))


@pytest.mark.slow
def test_word_bpe_and_conditioned_pages_match_python(tmp_path):
    browser_or_skip()
    from lstmgen.export import browser

    word = train_tiny(tmp_path, "word", level="word")
    unicode = "Café naïve — “quoted” 日本語 don't 1,000 x\n"
    (tmp_path / "bpe.txt").write_text((make_text(3000) + unicode) * 8, encoding="utf-8")
    bpe = tmp_path / "bpe"
    lstmgen.train([tmp_path / "bpe.txt"], out=bpe, level="bpe", vocab_size=400, epochs=1,
                  quiet=True, **TINY)  # fmt: skip
    conditioned = conditioned_run(tmp_path)
    for run in (word, bpe, conditioned):
        export(run, out=tmp_path / f"{run.name}-web", format="web")
    model = lstmgen.load(bpe, device="cpu")
    with browser.page(tmp_path / "bpe-web") as page:
        encode = "return encode(arguments[0])"
        for text in ("The cat sat", unicode, "  a\n\n\tb  c's <unk> 3.14 ¡€𝄞!", "日本"):
            ids = page.browser.execute_script(encode, text)
            assert ids == model.tokenizer.encode(text).tolist()
        for prime in ("Café ", ""):
            assert page.generate(prime, temperature=0, length=80)[0] == model.generate(
                prime, temperature=0, length=80
            )
    model = lstmgen.load(word, device="cpu")
    with browser.page(tmp_path / "word-web") as page:
        for prime in ("The cat  sat, on a zebra!!", ""):
            assert page.generate(prime, temperature=0, length=60)[0] == model.generate(
                prime, temperature=0, length=60
            )
    model = lstmgen.load(conditioned, device="cpu")
    with browser.page(tmp_path / "conditioned-web") as page:
        for number, stars in enumerate(("1", "2", "3")):
            text = page.generate("The dog", temperature=0, length=150, condition={0: number})[0]
            python = model.generate("The dog", temperature=0, length=150, condition=[stars])
            assert text == python


# ----- int8 -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_int8_is_smaller_and_nearly_as_good(trained_run, char_onnx, tmp_path):
    from lstmgen.data.store import TokenStore
    from lstmgen.export.generate import onnx_bits_per_char

    done = cli("export", str(trained_run), "--quantize", "int8", "--out", str(tmp_path / "int8"))
    assert done.returncode == 0, done.stderr
    assert "int8" in json.loads((tmp_path / "int8" / "lstmgen-model.json").read_text())["quantize"]
    fp32_bytes = (char_onnx / "model.onnx").stat().st_size
    int8_bytes = (tmp_path / "int8" / "model.onnx").stat().st_size
    assert int8_bytes < fp32_bytes / 2
    model = lstmgen.load(trained_run, device="cpu")
    held_out = np.asarray(TokenStore.open(trained_run / "data").val, dtype=np.int64)
    characters = len(model.tokenizer.decode(held_out))
    fp32 = onnx_bits_per_char(OnnxModel(char_onnx / "model.onnx"), held_out, characters)
    int8 = onnx_bits_per_char(OnnxModel(tmp_path / "int8" / "model.onnx"), held_out, characters)
    described = json.loads((char_onnx / "lstmgen-model.json").read_text())
    assert abs(fp32 - described["held_out_bits_per_char"]) < 0.05  # one stream vs evaluation's
    assert fp32 - 0.02 < int8 < fp32 + 0.1
    text = onnx_samples(OnnxModel(tmp_path / "int8" / "model.onnx"), model, "The", temperature=0)
    assert len(text[0]) == 500


# ----- bad input --------------------------------------------------------------------------------
def one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("lstmgen: error:")
    for word in words:
        assert word in done.stderr


def test_bad_input_is_one_line_with_exit_2(trained_run, tmp_path):
    untrained = tmp_path / "untrained"
    shutil.copytree(trained_run, untrained, ignore=shutil.ignore_patterns("*.safetensors"))
    one_line_error(cli("export", str(untrained), "--out", str(tmp_path / "a")), "no checkpoint")
    one_line_error(cli("export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a")), "run")
    done = cli("export", str(trained_run), "--format", "tflite", "--out", str(tmp_path / "a"))
    one_line_error(done, "tflite", "onnx, web")
    done = cli("export", str(trained_run), "--quantize", "int4", "--out", str(tmp_path / "a"))
    one_line_error(done, "int4", "int8")
    (tmp_path / "taken").mkdir()
    done = cli("export", str(trained_run), "--out", str(tmp_path / "taken"))
    one_line_error(done, "exists", "--overwrite")
    done = cli("export", str(trained_run), "--out", str(trained_run / "exported"))
    one_line_error(done, "inside the run")
    empty = tmp_path / "empty-runtime"
    empty.mkdir()
    done = cli("export", str(trained_run), "--format", "web")
    one_line_error(done, "--out")
    done = cli(
        "export", str(trained_run), "--format", "web", "--runtime-dir", str(empty),
        "--out", str(tmp_path / "w"),
    )  # fmt: skip
    one_line_error(done, "onnxruntime-web", "--runtime-url")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-runtime", "taken", "untrained"]


def test_an_interrupted_export_leaves_no_half_written_folder(trained_run, tmp_path, monkeypatch):
    import lstmgen.export.web as web

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(web, "write_page", interrupted)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for name in web.RUNTIME_FILES:
        (runtime / name).write_text("")
    with pytest.raises(KeyboardInterrupt):
        export(trained_run, out=tmp_path / "web", format="web", runtime_dir=runtime)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runtime"]
    # replacing a folder: the old one stays whole
    export(trained_run, out=tmp_path / "web")
    before = sorted(p.name for p in (tmp_path / "web").iterdir())
    with pytest.raises(KeyboardInterrupt):
        export(trained_run, out=tmp_path / "web", format="web", runtime_dir=runtime, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "web").iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runtime", "web"]


def test_the_manuals_onnxruntime_example_writes_lstmgens_greedy_text(char_onnx, trained_run):
    """docs/commands/export.md's Python example, with onnxruntime alone, on the tiny run."""
    page = (Path(__file__).parents[1] / "docs" / "commands" / "export.md").read_text("utf-8")
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('"export/shakespeare"', repr(str(char_onnx))).replace("ROMEO:", "The cat")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model = lstmgen.load(trained_run, device="cpu")
    assert done.stdout == model.generate("The cat", temperature=0, length=200) + "\n"


def test_the_latest_checkpoint_exports_too(trained_run, tmp_path):
    export(trained_run, out=tmp_path / "latest", checkpoint="latest")
    manifest = json.loads((tmp_path / "latest" / "lstmgen-model.json").read_text("utf-8"))
    assert manifest["checkpoint"] == "latest" and manifest["held_out_bits_per_char"] > 0
