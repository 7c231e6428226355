"""The search of `lstmgen tune`: trials a user can leave running, kill and resume.

Built on Optuna: the study lives in TUNE_DIR/study.db (SQLite), a seeded TPE sampler picks
the settings, and a median pruner, fed the held-out bits/char the trainer measures at each of
its ~20 evaluations, stops hopeless trials early. Each trial is an ordinary run directory
under TUNE_DIR/trials/, trained on one token store prepared once in TUNE_DIR/data.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from pathlib import Path

from lstmgen.api import prepare, train
from lstmgen.config import parse_duration
from lstmgen.data.sources import as_specs
from lstmgen.errors import Interrupted, LstmgenError, TrainingInterrupted, say
from lstmgen.files import read_json
from lstmgen.tuning.report import report
from lstmgen.tuning.space import defaults_in, read_space, short, suggest

POINTS = 20  # evaluations per trial (the trainer's curve points): the pruner's steps
CURVE_TOKENS = 16_384  # held-out tokens of every trial's curve points (fewer if it has fewer)
FAILURES_IN_A_ROW = 3  # then the space is more likely wrong than the trials unlucky
STATE_FILE = "tune.json"


def tune(
    sources=None,
    *,
    out: str | Path,
    trial_time: str | None = None,
    trial_steps: int | None = None,
    trials: int | None = None,
    timeout: str | None = None,
    space: str | Path | None = None,
    seed: int = 0,
    resume: bool = False,
    quiet: bool = False,
    pruner=None,
    **data_options,
) -> dict:
    """Search settings for the sources; return the best trial ({"trial", "bits_per_char",
    "params", "run"}). resume=True continues the search in `out` (trials and timeout may be
    raised). `pruner`: an Optuna pruner instead of the median pruner."""
    optuna = _optuna()
    out = Path(out)
    if resume:
        settings = _resumed(out, trials=trials, timeout=timeout)
    else:
        settings = _create(
            sources, out, trial_time, trial_steps, trials, timeout, space, seed, data_options
        )
    study = _open_study(optuna, out, settings, pruner)
    _search(optuna, study, out, settings, quiet)
    return report(optuna, study, out, quiet)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise LstmgenError("lstmgen tune needs Optuna: pip install 'lstmgen[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _create(sources, out, trial_time, trial_steps, trials, timeout, space, seed, data_options):
    if out.exists():
        hint = (
            f"continue it with: lstmgen tune --resume {out}"
            if (out / STATE_FILE).is_file()
            else "remove it"
        )
        raise LstmgenError(f"{out} already exists; {hint}, or choose another --out")
    if not sources:
        raise LstmgenError(
            "no input given; name text files, folders, '-' for stdin, or python-docs"
        )
    if (trial_time is None) == (trial_steps is None):
        raise LstmgenError("give each trial a budget: --trial-time (e.g. 60s) or --trial-steps")
    budget = _duration("--trial-time", trial_time)
    if budget is not None and budget <= 0:
        raise LstmgenError(f"--trial-time {trial_time} must be more than 0 seconds")
    if trial_steps is not None and trial_steps < 1:
        raise LstmgenError(f"--trial-steps {trial_steps} must be at least 1")
    if trials is None and timeout is None:
        trials = 20
    _check_stops(trials, timeout)
    settings = {
        "format": 1,
        "trial_time": trial_time,
        "trial_steps": trial_steps,
        "trials": trials,
        "timeout": timeout,
        "space": read_space(Path(space) if space else None),
        "seed": seed,
        "sources": [str(s) for s in as_specs(sources)],
    }
    out.mkdir(parents=True)
    try:
        prepare(sources, out=out / "data", quiet=True, **data_options)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # nothing half-made: the same command can run again
        raise
    (out / STATE_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return settings


def _check_stops(trials, timeout) -> None:
    if trials is not None and trials < 1:
        raise LstmgenError(f"--trials {trials} must be at least 1")
    if timeout is not None and not _duration("--timeout", timeout) > 0:
        raise LstmgenError(f"--timeout {timeout} must be more than 0 seconds")


def _duration(flag: str, text: str | None) -> float | None:
    try:
        return parse_duration(text)
    except LstmgenError as e:
        raise LstmgenError(f"{flag}: {e}") from None


def _resumed(out: Path, *, trials, timeout) -> dict:
    try:
        settings = read_json(out / STATE_FILE, fix="start the tune again in a new --out")
    except FileNotFoundError:
        raise LstmgenError(
            f"{out} is not a tune directory (no readable {STATE_FILE}); start one with "
            f"lstmgen tune SOURCES --out {out} --trial-time 60s"
        ) from None
    if not isinstance(settings, dict):
        raise LstmgenError(f"{out / STATE_FILE} is damaged; start the tune again in a new --out")
    _check_stops(trials, timeout)
    if trials is not None:
        settings["trials"] = trials
    if timeout is not None:
        settings["timeout"] = timeout
    (out / STATE_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return settings


def _open_study(optuna, out: Path, settings: dict, pruner):
    storage = f"sqlite:///{out / 'study.db'}"
    finished = 0
    try:
        old = optuna.load_study(study_name="lstmgen", storage=storage)
        finished = len(old.get_trials(deepcopy=False))
    except KeyError:
        pass
    # seeded per session by the trials so far: a resumed search goes on reproducibly
    sampler = optuna.samplers.TPESampler(seed=settings["seed"] + finished)
    study = optuna.create_study(
        study_name="lstmgen",
        storage=storage,
        direction="minimize",
        sampler=sampler,
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5),
        load_if_exists=True,
    )
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # its process was killed: the trial ends as failed, and a new one takes its place
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    states = {t.state for t in study.get_trials(deepcopy=False)}
    done = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    if not states & (done | {optuna.trial.TrialState.WAITING}):
        study.enqueue_trial(defaults_in(settings["space"]))  # today's defaults come first
    return study


def _counted(optuna, study) -> list:
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=done)


def _search(optuna, study, out: Path, settings: dict, quiet: bool) -> None:
    budget = {"max_time": settings["trial_time"]} if settings["trial_time"] else {}
    if settings["trial_steps"]:
        budget = {"max_steps": settings["trial_steps"]}
    # every trial's curve points score the same held-out sample, so the pruner compares
    # trials on one text
    budget["curve_tokens"] = CURVE_TOKENS
    limit_s = parse_duration(settings["timeout"]) if settings["timeout"] else math.inf
    spent = sum(_seconds(t) for t in _counted(optuna, study))
    failures = 0
    _warm_up()
    while True:
        counted = _counted(optuna, study)
        if settings["trials"] is not None and len(counted) >= settings["trials"]:
            return
        if spent >= limit_s:
            return
        trial = study.ask()
        params = suggest(trial, settings["space"])
        options = {k: v for k, v in params.items() if v != "auto"}  # auto: sized to the time
        run = out / "trials" / f"{trial.number:04d}"
        shutil.rmtree(run, ignore_errors=True)  # a killed trial's leftovers
        started = time.perf_counter()
        try:
            result = train(  # quiet, and its summary not printed: the tune prints one line
                [out / "data"],
                out=run,
                quiet=True,
                on_evaluation=_pruning(optuna, trial, settings),
                **budget,
                **options,
            )
        except TrainingInterrupted:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise Interrupted(
                f"tune interrupted; its {len(counted)} finished trials are kept in {out}. "
                f"Continue with: lstmgen tune --resume {out}"
            ) from None
        except LstmgenError as e:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            say(f"trial {trial.number} failed: {e}")
            failures += 1
            if failures >= FAILURES_IN_A_ROW:
                raise LstmgenError(
                    f"{failures} trials in a row failed (the last: {e}); check the space "
                    f"(--space), then continue with: lstmgen tune --resume {out}"
                ) from None
            continue
        finally:
            spent += time.perf_counter() - started
        failures = 0
        if params.get("hidden") == "auto":  # the size --trial-time's sizing chose, for the table
            trained = read_json(run / "config.json", fix="start the tune again")["model"]
            trial.set_user_attr("hidden", trained["hidden"])
            params = {**params, "hidden": f"{trained['hidden']} (auto)"}
        shown = ", ".join(f"{k} {short(v)}" for k, v in params.items())
        if result.stopped_because == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            line = f"pruned after {result.steps:,} steps, {result.elapsed_s:.0f} s"
        else:
            value = result.last_val_bits_per_char or result.best_val_bits_per_char
            study.tell(trial, value)
            line = f"{value:.4f} bits/char"
        if not quiet:
            print(f"trial {trial.number}: {line}  ({shown})", flush=True)


def _warm_up() -> None:
    """Pay the process's first-use costs (the first backward pass, the first curves.png)
    before trial 0, so that they do not come out of the first trial's --trial-time."""
    import matplotlib.pyplot  # noqa: F401
    import torch

    layer = torch.nn.LSTM(8, 8)
    layer(torch.zeros(4, 2, 8))[0].sum().backward()


def _pruning(optuna, trial, settings: dict):
    """The trainer's evaluation hook: report held-out bits/char at the fraction of the
    trial's budget reached, and stop the trial when the pruner says so."""
    seconds = parse_duration(settings["trial_time"]) if settings["trial_time"] else None
    reported: set[int] = set()

    def report(row: dict) -> str | None:
        done = row["elapsed_s"] / seconds if seconds else row["step"] / settings["trial_steps"]
        point = min(POINTS, max(1, round(done * POINTS)))
        if point in reported:
            return None
        reported.add(point)
        trial.report(row["val_bpc"], point)
        return "pruned" if trial.should_prune() else None

    return report


def _seconds(trial) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()
