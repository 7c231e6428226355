"""`lstmgen generate` at the terminal: samples, stop strings, JSON lines, the interactive prompt."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from lstmgen.cli import main
from lstmgen.config import ModelConfig, SampleConfig
from lstmgen.console import apply_command, unescape, unit_of, write_jsonl
from lstmgen.sampling.sampler import Event

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_many_samples_print_in_order_each_whole(trained_run, capsys):
    import lstmgen

    texts = lstmgen.load(trained_run).generate("The ", length=40, seed=4, num_samples=3, stop=["."])
    code, out, _ = run_cli(
        [
            "generate",
            trained_run,
            "--prime",
            "The ",
            "--length",
            "40",
            "--seed",
            "4",
            "--num-samples",
            "3",
            "--stop",
            ".",
        ],
        capsys,
    )
    expected = "\n".join(
        f"----- sample {i + 1} -----\nThe {text}\n" for i, text in enumerate(texts)
    )
    assert code == 0 and out == expected


def test_jsonl_gives_one_object_per_sample_that_can_be_remade(trained_run, capsys):
    code, out, _ = run_cli(
        [
            "generate",
            trained_run,
            "--format",
            "jsonl",
            "--num-samples",
            "4",
            "--length",
            "30",
            "--stop",
            "\\n",
        ],
        capsys,
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted(r["sample"] for r in rows) == [0, 1, 2, 3]
    assert [r["sample"] for r in rows] == [0, 1, 2, 3]  # in sample order, whatever ends first
    for row in rows:
        assert row["prime"] == "" and "\n" not in row["text"] and row["end"] in ("stop", "length")
        assert row["characters"] == len(row["text"]) and (row["characters_per_second"] > 0) == (
            row["characters"] > 0
        )
        # char level: a token per character, and one more for a stop string's newline
        assert row["tokens"] == row["characters"] + (row["end"] == "stop")
        assert row["tokens_per_second"] > 0
        assert row["settings"]["stop"] == ["\n"] and row["settings"]["num_samples"] == 4
    seed = rows[0]["settings"][
        "seed"
    ]  # chosen at random, recorded: the same seed remakes the samples
    code, again, _ = run_cli(
        [
            "generate",
            trained_run,
            "--format",
            "jsonl",
            "--num-samples",
            "4",
            "--length",
            "30",
            "--stop",
            "\\n",
            "--seed",
            seed,
        ],
        capsys,
    )
    assert sorted((r["sample"], r["text"]) for r in map(json.loads, again.splitlines())) == sorted(
        (r["sample"], r["text"]) for r in rows
    )


def test_same_seed_same_text_across_processes(trained_run):
    argv = [
        sys.executable,
        "-m",
        "lstmgen",
        "generate",
        str(trained_run),
        "--length",
        "80",
        "--seed",
        "7",
        "--top-p",
        "0.9",
    ]
    # Both at once (two cores): each process pays Python's start and the imports.
    processes = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        for _ in range(2)
    ]
    (first, first_err), (second, _) = (p.communicate(timeout=120) for p in processes)
    assert [p.returncode for p in processes] == [0, 0], first_err
    assert first == second and len(first) == 81


def test_output_is_utf8_whatever_the_locale(trained_run):
    env = {**ENV, "PYTHONIOENCODING": "ascii", "LC_ALL": "C"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstmgen",
            "generate",
            str(trained_run),
            "--prime",
            "Café ☃ ",
            "--length",
            "10",
        ],
        capture_output=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode("utf-8").startswith("Café ☃ ")


def test_unescape():
    assert unescape(r"a\nb\tc\\n") == "a\nb\tc\\n"


def test_bad_generation_settings_one_line_exit_2(trained_run, tmp_path, capsys):
    no_weights = tmp_path / "no_weights"
    shutil.copytree(trained_run, no_weights)
    (no_weights / "model.safetensors").unlink()
    shutil.rmtree(no_weights / "best")
    cases = [
        (["--repetition-penalty", "0"], "--repetition-penalty 0.0 must be above 0"),
        (["--stop", ""], "--stop needs a non-empty string"),
        (["--top-k", "0"], "--top-k 0 must be at least 1"),
        (
            ["--min-length", "50", "--length", "10"],
            "--min-length 50 must be between 0 and --length",
        ),
        (["--format", "xml"], "--format 'xml' must be text or jsonl"),
        (["--num-samples", "0"], "--num-samples 0 must be at least 1"),
        (["--interactive", "--num-samples", "2"], "--interactive takes each prime at its prompt"),
    ]
    for extra, fragment in cases:
        code, out, err = run_cli(["generate", trained_run, *extra], capsys)
        assert code == 2 and err.count("\n") == 1 and fragment in err and not out, (extra, err)
    code, _, err = run_cli(["generate", no_weights], capsys)
    assert code == 2 and err.count("\n") == 1 and "model.safetensors" in err, err


def test_interactive_prompt_streams_changes_settings_and_leaves_on_ctrl_d(trained_run):
    pexpect = pytest.importorskip(
        "pexpect", reason="pexpect is in the test extra; install lstmgen[test]"
    )
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "lstmgen",
            "generate",
            str(trained_run),
            "--interactive",
            "--length",
            "30",
            "--seed",
            "1",
        ],
        env=ENV,
        encoding="utf-8",
        timeout=60,
        # Started with Ctrl-C ignored, as a background job of a script would be: it must still work.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    child.expect("Ctrl-D to leave")
    child.expect("> ")
    child.sendline(":temp 0")
    child.expect("temperature = 0.0")
    child.expect("> ")
    child.sendline(":temp -1")
    child.expect(":temperature -1.0 must be 0")  # a bad value is refused, the prompt stays
    child.expect("> ")
    child.sendline("The cat")
    child.expect(
        r"The cat\r\nThe cat([\s\S]*?)\r\n> "
    )  # the terminal echoes the line; the prime is then printed with its continuation
    greedy = child.match.group(1)
    assert len(greedy.replace("\r\n", "\n")) == 30
    child.sendline(
        ":len 1000000000"
    )  # a sample that would outlast the test: only Ctrl-C can end it
    child.expect("> ")
    child.sendline("The dog")
    child.expect(
        r"The dog\r\nThe dog[\s\S]{20}"
    )  # the echo, then the output: generation is under way
    child.sendintr()  # Ctrl-C stops this sample, not the program
    # The terminal discards its queued output on Ctrl-C, which may include " [stopped]" and the
    # prompt, and its queued input, which may include a line typed just after the Ctrl-C; so
    # ask for the settings until an answer comes (however long the machine takes to stop the
    # sample): an answer proves the prompt is back.
    time.sleep(0.2)
    for _ in range(30):
        child.sendline(":show")
        if child.expect(["length=1000000000", pexpect.TIMEOUT], timeout=2) == 0:
            break
    else:
        pytest.fail("no answer to :show after Ctrl-C: the prompt did not come back")
    child.expect("> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


class FakeEvents:
    """What Model.stream_samples returns: events, and each sample's token count so far."""

    def __init__(self, events, tokens):
        self.events, self.tokens, self.final = iter(events), [0] * len(tokens), tokens

    def __iter__(self):
        return self

    def __next__(self):
        event = next(self.events)
        if event.end is not None:
            self.tokens[event.sample] = self.final[event.sample]
        return event


class FakeModel:
    def __init__(self, events, tokens, kind="bpe"):
        self.made = FakeEvents(events, tokens)
        self.tokenizer = type("Tokenizer", (), {"kind": kind})()
        self.module = type("Module", (), {"config": ModelConfig(vocab_size=10)})()

    def stream_samples(self, prime, settings):
        return self.made

    def novelty(self, text, build=True):  # no run's training text at hand
        return None


def test_jsonl_prints_samples_in_order_with_true_token_rates_even_on_a_coarse_clock(monkeypatch):
    import io

    # Sample 2 ends first, then 0, then 1; sample 0 is 4 tokens making 10 characters (BPE).
    events = [
        Event(0, "Hello"),
        Event(2, "ok", "stop"),
        Event(1, "Hi"),
        Event(0, " world", "length"),
        Event(1, "!", "length"),
    ]
    monkeypatch.setattr("lstmgen.console.time.perf_counter", lambda: 100.0)  # no time passes
    out = io.StringIO()
    write_jsonl(FakeModel(events, [4, 4, 1]), "", SampleConfig(num_samples=3, seed=1), out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["sample"] for r in rows] == [0, 1, 2]
    assert [(r["text"], r["characters"], r["tokens"]) for r in rows] == [
        ("Hello world", 11, 4),
        ("Hi!", 3, 4),
        ("ok", 2, 1),
    ]
    for row in rows:
        assert row["tokens_per_second"] is not None and row["tokens_per_second"] > 0
        assert row["characters_per_second"] / row["tokens_per_second"] == pytest.approx(
            row["characters"] / row["tokens"], rel=1e-3
        )


def test_prime_takes_the_same_escapes_as_stop(trained_run, capsys):
    code, out, err = run_cli(
        ["generate", trained_run, "--prime", "The\\ncat\\tsat\\\\", "--length", "5"], capsys
    )
    assert code == 0 and out.startswith("The\ncat\tsat\\") and "\\n" not in out, err


def test_interactive_help_counts_length_in_the_model_s_units(trained_run):
    import lstmgen

    model = lstmgen.load(trained_run)
    assert unit_of(model) == "characters"
    assert ":len VALUE   characters per sample" in apply_command(":help", {}, unit_of(model))
    for kind in ("word", "bpe"):
        unit = unit_of(FakeModel([], [], kind=kind))
        text = apply_command(":help", {}, unit)
        assert ":len VALUE   tokens per sample" in text and "characters" not in text
