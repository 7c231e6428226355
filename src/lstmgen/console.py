"""Generation at the terminal: streamed text, JSON lines, and the interactive prompt."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, TextIO

from lstmgen.config import SampleConfig, random_seed
from lstmgen.data.novelty import copy_note
from lstmgen.errors import LstmgenError, warn


def unescape(text: str) -> str:
    """\\n, \\t and \\\\ in a command-line string → newline, tab and backslash."""
    out, i = [], 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in ("\\n", "\\t", "\\\\"):
            out.append({"\\n": "\n", "\\t": "\t", "\\\\": "\\"}[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# What one batch of samples may hold. A sample costs about 8.4 KB beside the model's arrays
# (measured: 20,000 samples of the 33-character, 32-unit test model, mostly Python objects).
SAMPLE_BATCH_BYTES = 256 << 20
SAMPLE_OVERHEAD_BYTES = 8 << 10


def samples_per_batch(model_config) -> int:
    """How many samples one batch makes within SAMPLE_BATCH_BYTES: each holds its recurrent
    state and a few copies of its logits (adjusted, weighed, the penalty's counts)."""
    c = model_config
    arrays = 4 * (8 * c.vocab_size + 6 * c.layers * c.hidden)  # float32 and int32
    return max(1, SAMPLE_BATCH_BYTES // (SAMPLE_OVERHEAD_BYTES + arrays))


def sample_batches(model, prime: str, settings: SampleConfig) -> Iterator[tuple[int, Any]]:
    """(first sample's number, its batch's events) for settings.num_samples samples made in
    batches that fit in memory; each sample's text is the one it has when made all at once."""
    size = samples_per_batch(model.module.config)
    if settings.num_samples <= size:
        yield 0, model.stream_samples(prime, settings)
        return
    if settings.seed is None:  # one seed for every batch: the set is one set of samples
        settings = replace(settings, seed=random_seed())
    for first in range(0, settings.num_samples, size):
        batch = replace(settings, num_samples=min(size, settings.num_samples - first))
        yield first, model.stream_samples(prime, batch, first_sample=first)


def write_text(model, prime: str, settings: SampleConfig, out: TextIO | None = None) -> None:
    """Stream samples to out as they are made.

    Samples are made in batches (as one batch when they fit in memory); in each, the first
    streams live, the others are held until it ends, then each is printed (what exists of it
    so far) and goes on live.
    """
    out = out or sys.stdout
    num_samples = settings.num_samples
    many = num_samples > 1
    held: dict[int, list[str]] = {}  # a batch's text not shown yet, by sample
    ended: set[int] = set()
    prime_free: dict[int, str] = {}  # each sample's text so far, for its note
    shown = 0

    def header(i: int) -> str:
        return (
            (f"\n----- sample {i + 1} -----\n" if i else f"----- sample {i + 1} -----\n")
            if many
            else ""
        )

    try:
        out.write(header(0) + prime)
        out.flush()
        for first, events in sample_batches(model, prime, settings):
            for event in events:
                sample = first + event.sample
                if sample == shown:
                    out.write(event.text)
                else:
                    held.setdefault(sample, []).append(event.text)
                if event.end is not None:
                    ended.add(sample)
                    text = prime_free.pop(sample, "") + event.text
                    figures(model, text, settings, build=False)
                else:
                    prime_free[sample] = prime_free.get(sample, "") + event.text
                while shown in ended:
                    ended.discard(shown)
                    out.write("\n")
                    shown += 1
                    if shown < num_samples:
                        out.write(header(shown) + prime + "".join(held.pop(shown, [])))
                out.flush()
    except BrokenPipeError:  # the reader went away (`| head`): that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())


def figures(model, text: str, settings: SampleConfig, *, build: bool = True) -> dict:
    """A sample's novelty figures (longest_copy, copied_50: None where the run's index is not
    at hand), and the one-line note when an unguarded sample copies a long span."""
    try:
        found = model.novelty(text, build=build)
    except LstmgenError as e:
        if build:  # asked for (jsonl): say why the figures are missing
            warn_once(str(e))
        found = None
    found = found or {"longest_copy": None, "copied_50": None}
    note = copy_note(found["longest_copy"] or 0, guarded=settings.max_copy is not None)
    if note:
        warn_once(note)
    return found


_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warn(message)


def write_jsonl(model, prime: str, settings: SampleConfig, out: TextIO | None = None) -> None:
    """One JSON object per sample, in sample order: a sample that ends before an earlier one
    is held until that one is printed. Its speeds are timed from after the prime was read (in
    its batch) to its own end."""
    out = out or sys.stdout
    if settings.seed is None:  # recorded, so any sample can be remade
        settings = replace(settings, seed=random_seed())
    record = settings.to_dict()
    tick = time.get_clock_info("perf_counter").resolution  # the least time that can pass
    texts: dict[int, list[str]] = {}
    done: dict[int, dict] = {}
    shown = 0
    for first, events in sample_batches(model, prime, settings):  # each runs the prime through
        start = time.perf_counter()
        for event in events:
            sample = first + event.sample
            texts.setdefault(sample, []).append(event.text)
            if event.end is None:
                continue
            text = "".join(texts.pop(sample))
            tokens = events.tokens[event.sample]
            elapsed = time.perf_counter() - start
            timed = max(elapsed, tick)  # a coarse clock may show no time at all
            done[sample] = {
                "sample": sample,
                "prime": prime,
                "text": text,
                "end": event.end,
                "characters": len(text),
                "tokens": tokens,
                "seconds": round(elapsed, 4),
                "characters_per_second": round(len(text) / timed, 1),
                "tokens_per_second": round(tokens / timed, 1),
                **figures(model, text, settings),
                "settings": record,
                "precision": getattr(model, "precision", "fp32"),  # what --precision auto chose
            }
            while shown in done:
                out.write(json.dumps(done.pop(shown), ensure_ascii=False) + "\n")
                shown += 1
            out.flush()


COMMANDS = {
    # command: (setting, type, what it means)
    "temp": ("temperature", float, "temperature (0 = greedy)"),
    "len": ("length", int, "{unit} per sample"),
    "topk": ("top_k", int, "top-k (off to clear)"),
    "topp": ("top_p", float, "top-p (off to clear)"),
    "penalty": ("repetition_penalty", float, "repetition penalty (1 = off)"),
    "seed": ("seed", int, "seed (off for a new one each time)"),
    "stop": ("stop", str, "stop string (off to clear; \\n is a newline)"),
}


def help_text(unit: str = "tokens") -> str:
    """What :help prints; `unit` is what --length counts (characters at the char level)."""
    return "\n".join(
        ["Type a prime and press Enter to see its continuation. Commands:"]
        + [f"  :{name} VALUE   {what.format(unit=unit)}" for name, (_, _, what) in COMMANDS.items()]
        + [
            "  :show         current settings",
            "  :help         this text",
            "Ctrl-C stops the current sample; Ctrl-D (or :quit) leaves.",
        ]
    )


def unit_of(model) -> str:
    """What a sample's length counts for this model: characters, or tokens (words, subwords)."""
    return "characters" if getattr(model.tokenizer, "kind", "char") == "char" else "tokens"


def apply_command(line: str, settings: dict, unit: str = "tokens") -> str:
    """Change settings from a ':name value' line; return the line to print."""
    name, _, value = line[1:].strip().partition(" ")
    value = value.strip()
    if name in ("help", "?", ""):
        return help_text(unit)
    if name == "show":
        return "  ".join(
            f"{k}={v!r}"
            for k, v in SampleConfig(**settings).to_dict().items()
            if k != "num_samples"
        )
    if name not in COMMANDS:
        return f"unknown command :{name}; :help lists them"
    key, kind, _ = COMMANDS[name]
    if value in ("off", "none") and key in ("top_k", "top_p", "seed", "stop"):
        settings.pop(key, None)
        return f"{key} off"
    try:
        new = unescape(value) if kind is str else kind(value)
    except ValueError:
        return f":{name} needs a {kind.__name__}, e.g. :{name} {'0.5' if kind is float else '3'}"
    candidate = {**settings, key: [new] if key == "stop" else new}
    try:
        SampleConfig(**candidate)
    except LstmgenError as e:
        return str(e).replace("--", ":", 1)
    settings.update(candidate)
    return f"{key} = {candidate[key]!r}"


def interact(model, settings: SampleConfig, out: TextIO | None = None) -> None:
    """The prompt loop of `lstmgen generate RUN --interactive`."""
    out = out or sys.stdout
    settings = (
        settings.to_dict()
    )  # changed by :commands; a setting turned off returns to its default
    # Ctrl-C must reach us even if we were started with SIGINT ignored (e.g. as a background job).
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread
        pass
    print(
        f"lstmgen interactive: {model.run_dir}. Type a prime and press Enter; "
        ":help for commands, Ctrl-D to leave.",
        file=out,
    )
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=out)
            return
        except KeyboardInterrupt:
            print(file=out)
            continue
        if line.strip() in (":quit", ":q", ":exit"):
            return
        try:
            if line.startswith(":"):
                print(apply_command(line, settings, unit_of(model)), file=out)
                continue
            out.write(line)
            for piece in model.stream(line, **settings):
                out.write(piece)
                out.flush()
        except KeyboardInterrupt:  # stops this sample (or reply), not the program
            out.write(" [stopped]")
        out.write("\n")
        out.flush()
