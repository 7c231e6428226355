"""What a training run tells the world: progress bar, metrics.jsonl, samples after each epoch."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from lstmgen.config import bits_per_char
from lstmgen.errors import LstmgenError
from lstmgen.files import json_line, read_lines
from lstmgen.plot import plot_runs
from lstmgen.training.trainer import Trainer

# --samples N takes the first N, shown from the coolest: 0.8 is generate's default.
SAMPLE_TEMPERATURES = (0.8, 0.5, 1.0, 0.2)
# Training slower than this share of what --max-time sizing measured is said once: the budget
# then buys a fraction of the steps it was sized for (944 instead of 4,406 on a loaded machine).
SLOW_SHARE = 0.5


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class RunReporter:
    """The trainer's hooks: draws progress, appends metrics.jsonl and samples.md, prints results."""

    def __init__(
        self,
        run_dir: Path,
        *,
        sampler,
        novelty=None,
        quiet: bool = False,
        console: Console | None = None,
        tokens_per_char: float = 1.0,
        tensorboard: bool = False,
        on_evaluation=None,
        sizing: dict | None = None,
    ):
        self.run_dir, self.sampler, self.quiet = run_dir, sampler, quiet
        self.novelty = novelty  # text -> {longest_copy, ...} against the training text, or None
        # of the held-out text: converts nats/token to bits/char
        self.tokens_per_char = tokens_per_char
        self.curves = CurvesFile(run_dir)
        self.on_evaluation = on_evaluation  # row -> a reason to stop, or None
        self.tensorboard = TensorBoardLog(run_dir / "tensorboard") if tensorboard else None
        self.console = console or Console(stderr=True, highlight=False)
        self.bar: Progress | None = None
        self.task = None
        self.window_tokens, self.window_start = 0, time.perf_counter()
        self.tokens_per_second = 0.0
        self.loss_ema: float | None = None
        self.sizing = sizing  # the run's --max-time sizing record: its measured speed
        self.warned_slow = False
        self.sampled_at: float | None = None  # when the last epoch's samples were made

    def print(self, text: str, *, always: bool = False) -> None:
        """A line on stderr; with quiet only when `always` (the final line)."""
        if always or not self.quiet:
            self.console.print(text, markup=False, soft_wrap=True)

    # ----- hooks ------------------------------------------------------------------------------
    def on_start(self, trainer: Trainer) -> None:
        self.window_start = time.perf_counter()
        if self.quiet:
            return
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%  {task.fields[stats]}"),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("training", total=1.0, stats="")

    def on_step(self, trainer: Trainer, loss, lr: float) -> None:
        p = trainer.progress
        c = trainer.config
        self.window_tokens += c.batch_size * c.seq_len * trainer.peers.size  # every process's
        if p.step % 10 and p.step > 1 and self.loss_ema is not None:
            return  # the first step of a session is always measured: a resumed run has no EMA
        value = float(loss)  # a device sync: only every 10th step
        self.loss_ema = (
            value
            if self.loss_ema is None or not math.isfinite(self.loss_ema)
            else 0.9 * self.loss_ema + 0.1 * value
        )
        now = time.perf_counter()
        window_s = now - self.window_start
        if window_s > 1.0 or (not self.tokens_per_second and window_s > 0):
            # over the last second or so; a run shorter than that gets its rate so far, not 0
            self.tokens_per_second = self.window_tokens / window_s
        if window_s > 1.0:
            self.window_tokens, self.window_start = 0, now
        if self.bar is None:
            return
        done = trainer.fraction_done()
        left = p.elapsed_s / done - p.elapsed_s if done > 0 else 0.0
        val = (
            f"val {bits_per_char(p.last_val_nats, self.tokens_per_char):.3f} bpc  "
            if p.last_val_nats is not None
            else ""
        )
        epochs = trainer.config.effective_epochs
        description = f"epoch {p.epoch + 1}" + (f"/{epochs}" if epochs else "")
        stats = (
            f"loss {self.loss_ema:.3f}  {val}{self.tokens_per_second:,.0f} tok/s  "
            f"{format_seconds(p.elapsed_s)} elapsed, {format_seconds(left)} left"
        )
        self.bar.update(self.task, completed=min(done, 1.0), description=description, stats=stats)

    def on_eval(
        self, trainer: Trainer, val_nats: float, improved: bool, sample_tokens: int | None = None
    ) -> None:
        p = trainer.progress
        # a sample's bits/char takes the held-out split's tokens per character (exact for chars)
        tokens_per_char = self.tokens_per_char
        record = {
            "step": p.step,
            "epoch": round(p.epoch + p.batch / max(trainer.steps_per_epoch, 1), 4),
            "tokens": p.tokens,
            "elapsed_s": round(p.elapsed_s, 2),
            "train_loss": None if self.loss_ema is None else round(self.loss_ema, 5),
            "train_bpc": None
            if self.loss_ema is None
            else round(bits_per_char(self.loss_ema, self.tokens_per_char), 5),
            "val_loss": round(val_nats, 5),
            "val_bpc": round(bits_per_char(val_nats, tokens_per_char), 5),
            "val_perplexity": round(math.exp(min(val_nats, 700)), 3),  # per token
            "val_tokens": sample_tokens or len(trainer.val_tokens),
            "tokens_per_s": round(self.tokens_per_second, 1),
            "lr": trainer.optimizer.param_groups[0]["lr"],
        }
        if sample_tokens is not None:
            record["val_sample"] = True  # a sample of the held-out text: a curve point only
        elif trainer.average.active:  # which weights scored val_loss: the better of the two
            record["weights"] = "average" if trainer.average.chosen else "last"
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.add(record)
        self.curves.draw(p.elapsed_s)
        if self.on_evaluation is not None:
            reason = self.on_evaluation(record)
            if reason:  # a text says why; any other true value just stops
                trainer.stop_reason = reason if isinstance(reason, str) else "stopped by a hook"
        mark = "  (best)" if improved else ""
        self.print(
            f"step {p.step:,}  epoch {record['epoch']:.2f}  "
            + self._figures(val_nats, sample_tokens)
            + f"  {self.tokens_per_second:,.0f} tok/s  "
            f"{format_seconds(p.elapsed_s)}{mark}"
        )
        self._say_if_slow(trainer)

    def _figures(self, val_nats: float, sample_tokens: int | None) -> str:
        """The step line's bits/char, each rounded once from the figure itself (as the closing
        line rounds it): training, and the held-out text, all of it or a sample of it."""
        train = (
            ""
            if self.loss_ema is None
            else (f"train {bits_per_char(self.loss_ema, self.tokens_per_char):.4f} bpc  ")
        )
        bpc = bits_per_char(val_nats, self.tokens_per_char)
        if sample_tokens is not None:  # a curve point: another figure than the whole text's
            return f"{train}held-out sample ({sample_tokens:,} tokens) {bpc:.4f} bpc"
        return f"{train}held-out (all) {val_nats:.4f} nats/token = {bpc:.4f} bpc"

    def _say_if_slow(self, trainer: Trainer) -> None:
        """Once: training runs far slower than --max-time sizing measured, so the budget buys
        far fewer steps than it was sized for; --max-steps makes a run repeatable."""
        measured = (self.sizing or {}).get("tokens_per_s")
        p = trainer.progress
        # the run's own average so far, after a tenth of it: one interval's rate dips below
        # half at a curve point or a sample on an idle machine (seen in make demo)
        if self.warned_slow or not measured or trainer.fraction_done() < 0.1:
            return
        rate = p.tokens / max(p.elapsed_s, 1e-9)
        if rate >= SLOW_SHARE * measured:
            return
        self.warned_slow = True
        c = trainer.config
        planned = (self.sizing or {}).get("budget_tokens", 0) / (
            c.batch_size * c.seq_len * trainer.peers.size
        )
        steps = f" (about --max-steps {planned:,.0f} is what sizing planned)" if planned else ""
        self.print(
            f"note: training runs at {rate:,.0f} tokens/s, "
            f"{rate / measured:.0%} of the {measured:,.0f} that sizing "
            "measured (is the machine busier now?): this --max-time run will train fewer "
            f"steps than planned. For a run that trains the same steps every time, give "
            f"--max-steps{steps}"
        )

    def on_rollback(self, trainer: Trainer, message: str) -> None:
        self.print(f"warning: {message}")
        # those steps are redone
        truncate_metrics(self.run_dir / "metrics.jsonl", trainer.progress.step)
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(
                json.dumps({"event": "rollback", "step": trainer.progress.step, "message": message})
                + "\n"
            )

    def on_epoch_end(self, trainer: Trainer) -> None:
        """--samples samples, unless the last ones were made less than --sample-every ago."""
        p, c = trainer.progress, trainer.config
        now = time.perf_counter()
        if not c.samples or (
            self.sampled_at is not None and now - self.sampled_at < (c.sample_every_s or 0)
        ):
            return
        self.sampled_at = now
        bits = bits_per_char(p.last_val_nats, self.tokens_per_char)
        lines = [f"## epoch {p.epoch} (step {p.step}, held-out {bits:.3f} bits/char)\n"]
        for temperature in sorted(SAMPLE_TEMPERATURES[: c.samples]):
            sample = self.sampler(length=c.sample_length, temperature=temperature, seed=p.epoch)
            copied = self.longest_copy(sample)
            text = readable(sample, temperature)
            lines.append(f"### temperature {temperature}{copied}\n\n```text\n{text}\n```\n")
            self.print(f"--- sample, temperature {temperature} ---{copied}\n{text}")
        with open(self.run_dir / "samples.md", "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def longest_copy(self, text: str) -> str:
        """ ", longest copy 23 characters": how much of a sample stands in the training text,
        so a user sees memorising begin ("" where the run's copy index is not at hand)."""
        if self.novelty is None:
            return ""
        try:
            found = self.novelty(text)
        except LstmgenError as e:  # e.g. a training text above the index's limit: said once
            self.print(f"the samples show no longest copy: {e}")
            self.novelty = None
            return ""
        return f" (longest copy {found['longest_copy']} characters)" if found else ""

    def on_end(self, trainer: Trainer, reason: str) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        self.curves.draw(trainer.progress.elapsed_s, always=True)
        if self.tensorboard is not None:
            self.tensorboard.close()


def readable(text: str, temperature: float) -> str:
    """A sample as a user can read it: early in training a cool one is often nothing but
    spaces and newlines (the commonest characters of code), which shows as a blank."""
    if text.strip():
        return text
    spaces, newlines = text.count(" "), text.count("\n")
    return (
        f"(only whitespace: {spaces:,} spaces, {newlines:,} newlines, "
        f"{len(text) - spaces - newlines:,} other; too early in training for temperature "
        f"{temperature}: the model's likeliest characters are still blanks)"
    )


class QuietHooks:
    """The hooks of the training processes other than rank 0: they write and print nothing."""

    def print(self, text: str, *, always: bool = False) -> None:
        pass

    def on_start(self, trainer: Trainer) -> None:
        pass

    def on_step(self, trainer: Trainer, loss, lr: float) -> None:
        pass

    def on_eval(self, trainer: Trainer, val_nats: float, improved: bool, **_) -> None:
        pass

    def on_rollback(self, trainer: Trainer, message: str) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer) -> None:
        pass

    def on_end(self, trainer: Trainer, reason: str) -> None:
        pass


class CurvesFile:
    """curves.png in the run directory, redrawn at evaluations while drawing it has taken at
    most DRAWING_SHARE of the run's time (matplotlib's first import alone is ~0.5 s), and at
    the end of every session."""

    DRAWING_SHARE = 0.01
    FIRST_DRAW_S = 1.0  # importing matplotlib and the first figure, before it is measured

    def __init__(self, run_dir: Path):
        self.run_dir, self.spent_s, self.last_s = run_dir, 0.0, self.FIRST_DRAW_S

    def draw(self, elapsed_s: float, *, always: bool = False) -> None:
        if not always and self.spent_s + self.last_s > self.DRAWING_SHARE * elapsed_s:
            return
        started = time.perf_counter()
        try:
            if not plot_runs([self.run_dir], self.run_dir / "curves.png"):
                return  # no evaluation yet: nothing to draw
        except OSError:
            pass  # a picture is not worth stopping training for (a full disk says so elsewhere)
        self.last_s = time.perf_counter() - started
        self.spent_s += self.last_s


class TensorBoardLog:
    """--tensorboard: each evaluation's numbers as TensorBoard scalars in RUN/tensorboard."""

    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise LstmgenError(
                "--tensorboard needs the tensorboard package: pip install tensorboard"
            ) from None
        self.writer = SummaryWriter(str(folder))

    def add(self, record: dict) -> None:
        step = record["step"]
        held_out = "val_sample_bpc" if record.get("val_sample") else "val_bpc"
        self.writer.add_scalar(f"bits_per_char/{held_out}", record["val_bpc"], step)
        if record["train_bpc"] is not None:
            self.writer.add_scalar("bits_per_char/train_bpc", record["train_bpc"], step)
        self.writer.add_scalar("speed/tokens_per_s", record["tokens_per_s"], step)
        self.writer.add_scalar("schedule/lr", record["lr"], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def truncate_metrics(path: Path, step: int) -> int:
    """Drop metric lines written after `step` (training goes back there: they will be written
    again), and lines a crash cut short; return how many of those damaged lines there were."""
    if not path.exists():
        return 0
    kept, damaged = [], 0
    for line in read_lines(path, fix="move it away (it is not the log lstmgen writes)"):
        row = json_line(line)
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            if row["step"] <= step:
                kept.append(line)
        else:  # a line cut short by a crash
            damaged += bool(line.strip())
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)
    return damaged
