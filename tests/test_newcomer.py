"""What surprised a newcomer (issue 26): the summary on stdout, samples that can be turned down,
rounded settings in `info`, the size a tune trial trained, a time budget on a busy machine."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

from conftest import make_text
from test_cli import TINY_FLAGS, run_cli


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(make_text(6_000))
    return path


def test_the_summary_goes_to_stdout_and_json_is_for_scripts(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(
        ["train", corpus, "--out", run, "--epochs", "1", "-q", *TINY_FLAGS], capsys
    )
    assert code == 0 and not err  # `-q 2>/dev/null` still tells where the run is
    assert out.startswith("stopped (epochs) after ") and f"lstmgen generate {run}" in out
    code, out, err = run_cli(["train", "--resume", run, "--epochs", "2", "-q", "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and not err and len(out.splitlines()) == 1
    assert result["run_dir"] == str(run) and result["stopped_because"] == "epochs"
    assert result["epochs"] == 2 and 0 < result["best_val_bits_per_char"] < 8
    assert set(result) >= {"steps", "tokens", "elapsed_s", "last_val_bits_per_char"}


def test_samples_can_be_turned_off_and_come_at_most_every_so_often(corpus, tmp_path, capsys):
    flags = ["--epochs", "3", *TINY_FLAGS]
    code, out, err = run_cli(["train", corpus, "--out", tmp_path / "a", *flags], capsys)
    assert code == 0 and err.count("--- sample, temperature") == 4  # epochs of < 1 s: once
    assert not (tmp_path / "a" / "samples.md").read_text().count("## epoch 2")
    code, _, err = run_cli(
        ["train", corpus, "--out", tmp_path / "b", "--samples", "0", *flags], capsys
    )
    assert code == 0 and "--- sample" not in err and "step " in err  # the progress stays
    assert not (tmp_path / "b" / "samples.md").exists()
    code, _, err = run_cli(
        ["train", corpus, "--out", tmp_path / "c", "--samples", "1", "--sample-every", "0.001s"]
        + flags,
        capsys,
    )
    assert code == 0 and err.count("--- sample, temperature 0.8 ---") == 3
    assert "temperature 0.2" not in err
    code, _, err = run_cli(["train", corpus, "--out", tmp_path / "d", "--samples", "5"], capsys)
    assert code == 2 and "--samples 5 must be between 0 and 4" in err


def test_info_rounds_tuned_values(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    config["model"]["dropout"] = 0.10222612486575872
    config["train"]["lr"] = 0.0123456789
    (run / "config.json").write_text(json.dumps(config))
    code, out, _ = run_cli(["info", run], capsys)
    assert code == 0 and "dropout 0.102," in out and "lr 0.0123," in out


def test_train_help_says_max_time_sizes_the_model(capsys):
    code, out, _ = run_cli(["train", "--help"], capsys)
    text = " ".join(out.replace("│", " ").split())  # the help's box, unwrapped
    assert code == 0 and "[default: 256; with --max-time, sized to the budget unless" in text


def test_a_tune_table_shows_the_size_an_auto_trial_trained(corpus, tmp_path, capsys):
    pytest.importorskip("optuna")
    from lstmgen.tuning import tune

    space = tmp_path / "space.toml"
    space.write_text(
        '[hidden]\nchoices = ["auto", 16]\n[layers]\nvalue = 1\n[embedding]\nvalue = 8\n'
        "[seq_len]\nvalue = 16\n[batch_size]\nvalue = 4\n[lr]\nlow = 0.003\nhigh = 0.03\n"
    )
    tune([corpus], out=tmp_path / "t", trial_steps=4, trials=1, space=space, seed=1)
    out = capsys.readouterr().out
    assert "trial 0: " in out and "hidden 256 (auto)" in out  # the default size, untimed
    assert "256 (auto)" in out.split("trials, best first")[1]  # and in the table


def test_a_much_slower_speed_than_sizing_measured_is_said_once(capsys):
    from lstmgen.training.report import RunReporter

    reporter = RunReporter.__new__(RunReporter)
    reporter.quiet, reporter.warned_slow = False, False
    reporter.sizing = {"tokens_per_s": 10_000, "budget_tokens": 4_406 * 512}
    reporter.console = SimpleNamespace(print=lambda text, **_: print(text))
    progress = SimpleNamespace(step=100, tokens=60_000, elapsed_s=10.0)
    trainer = SimpleNamespace(
        progress=progress,
        config=SimpleNamespace(batch_size=16, seq_len=32),
        peers=SimpleNamespace(size=1),
        fraction_done=lambda: 0.5,
    )
    reporter.tokens_per_second = 1_000  # one slow interval (a curve point): the run's average
    reporter._say_if_slow(trainer)  # is 60 %, not worth a word
    assert capsys.readouterr().out == ""
    progress.tokens = 21_000  # the run's average: 2,100 tokens/s
    trainer.fraction_done = lambda: 0.05  # too early to judge
    reporter._say_if_slow(trainer)
    assert capsys.readouterr().out == ""
    trainer.fraction_done = lambda: 0.2
    for _ in range(3):
        reporter._say_if_slow(trainer)
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and "2,100 tokens/s, 21% of the 10,000 that sizing measured" in said[0]
    assert "--max-steps (about --max-steps 4,406 is what sizing planned)" in said[0]


def test_the_page_has_seed_stop_and_samples_controls(trained_run):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no chromium and chromedriver here (CI installs them: .ci/run)")
    import socket
    import threading
    import time

    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from lstmgen.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app([trained_run]), port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))

        def generate(**fields) -> str:
            for name, value in fields.items():
                box = browser.find_element(By.ID, name)
                box.clear()
                box.send_keys(value)
            browser.find_element(By.ID, "generate").click()
            wait.until(lambda b: "chars/s" in b.find_element(By.ID, "status").text)
            return browser.find_element(By.ID, "text").text

        first = generate(n="2", seed="7", stop_at="\\n", max_tokens="60")
        assert first.count("----- sample") == 2 and "sample 2" in first
        assert all(len(s.split("-----\n")[-1]) < 60 for s in first.split("\n\n"))  # stopped
        assert generate() == first  # the same seed and settings: the same text
    finally:
        browser.quit()
        server.should_exit = True
