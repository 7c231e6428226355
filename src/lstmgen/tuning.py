"""`lstmgen tune`: a hyper-parameter search a user can leave running, kill and resume.

Built on Optuna: the study lives in TUNE_DIR/study.db (SQLite), a seeded TPE sampler picks
the settings, and a median pruner, fed the held-out bits/char the trainer measures at each of
its ~20 evaluations, stops hopeless trials early. Each trial is an ordinary run directory
under TUNE_DIR/trials/, trained on one token store prepared once in TUNE_DIR/data.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import time
import typing
import warnings
from pathlib import Path

from lstmgen.api import prepare, train
from lstmgen.config import NOT_REUSED, ModelConfig, TrainConfig, fits, parse_duration, type_name
from lstmgen.data.sources import as_specs
from lstmgen.errors import Interrupted, LstmgenError, TrainingInterrupted, say

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

# Today's defaults are the first trial; "auto" lets --trial-time size the model (sizing.py).
DEFAULT_SPACE: dict[str, dict] = {
    "hidden": {"choices": ["auto", 64, 128, 192, 256, 384, 512]},
    "layers": {"low": 1, "high": 3},
    "embedding": {"choices": [32, 64, 128]},
    "lr": {"low": 1e-3, "high": 3e-2, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "activation_reg": {"low": 0.0, "high": 4.0},
    "temporal_reg": {"low": 0.0, "high": 2.0},
    "seq_len": {"choices": [16, 32, 64, 128]},
    "batch_size": {"choices": [8, 16, 32, 64]},
}
# a trial's budget and watching are the tune's; what only a run of its own would want is not
TUNABLE = (ModelConfig.option_names() | TrainConfig.option_names()) - (
    NOT_REUSED | {"sample_length", "seed"}
)
SHORT = {"activation_reg": "AR", "temporal_reg": "TAR", "batch_size": "batch", "seq_len": "seq"}
HINTS = {**typing.get_type_hints(ModelConfig), **typing.get_type_hints(TrainConfig)}
POINTS = 20  # evaluations per trial (the trainer's curve points): the pruner's steps
CURVE_TOKENS = 16_384  # held-out tokens of every trial's curve points (fewer if it has fewer)
FAILURES_IN_A_ROW = 3  # then the space is more likely wrong than the trials unlucky
STATE_FILE = "tune.json"


# ----- the search space -----------------------------------------------------------------------
def read_space(path: Path | None) -> dict[str, dict]:
    """The default space, or a TOML file of ranges: `[lr] low = 1e-3 high = 3e-2 log = true`,
    `[hidden] choices = [128, 256]`, `[seq_len] value = 64`; checked key by key."""
    if path is None:
        return DEFAULT_SPACE
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LstmgenError(f"--space {path} does not exist; give a TOML file of ranges") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise LstmgenError(f"--space {path} is not valid TOML ({e})") from None
    if not raw:
        raise LstmgenError(f"--space {path} names no options; give at least one, e.g. [lr]")
    for name, spec in raw.items():
        check_range(name, spec, path)
    return raw


def check_range(name: str, spec, path) -> None:
    where = f"--space {path}: [{name}]"
    if name not in TUNABLE:
        raise LstmgenError(
            f"{where} is not an option that can be tuned; tunable: {', '.join(sorted(TUNABLE))}"
        )
    hint = HINTS[name]
    if not isinstance(spec, dict):
        raise LstmgenError(f"{where} must be a table: low/high, choices or value")
    kinds = {"choices", "value", "low"} & set(spec)
    unknown = set(spec) - {"choices", "value", "low", "high", "log"}
    if unknown or len(kinds) != 1:
        raise LstmgenError(
            f"{where} needs exactly one of low/high, choices or value"
            + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "")
        )
    if "choices" in spec and not (isinstance(spec["choices"], list) and spec["choices"]):
        raise LstmgenError(f"{where} choices must be a non-empty list")
    values = spec["choices"] if "choices" in spec else [spec["value"]] if "value" in spec else []
    for value in values:
        if not (fits(value, hint) or (name == "hidden" and value == "auto")):
            raise LstmgenError(f"{where} {value!r} is not a {type_name(hint)}")
    if "low" in spec:
        low, high = spec.get("low"), spec.get("high")
        numeric = hint in (int, float, int | None, float | None)
        if not (numeric and fits(low, hint) and fits(high, hint) and low < high):
            raise LstmgenError(
                f"{where} needs {type_name(hint)}s low < high (got {low!r}, {high!r})"
            )
        if spec.get("log") and low <= 0:
            raise LstmgenError(f"{where} log = true needs low > 0 (got {low})")


def suggest(trial, space: dict[str, dict]) -> dict:
    """A trial's settings from the space ("auto" hidden: left to --trial-time's sizing)."""
    params = {}
    for name, spec in space.items():
        if "value" in spec:
            params[name] = spec["value"]
        elif "choices" in spec:
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif HINTS[name] in (int, int | None):
            params[name] = trial.suggest_int(
                name, spec["low"], spec["high"], log=bool(spec.get("log"))
            )
        else:
            params[name] = trial.suggest_float(
                name, spec["low"], spec["high"], log=bool(spec.get("log"))
            )
    return params


def defaults_in(space: dict[str, dict]) -> dict:
    """Today's defaults, as a first trial, for the options the space varies."""
    defaults = {**ModelConfig().to_dict(), **TrainConfig().to_dict(), "hidden": "auto"}
    first = {}
    for name, spec in space.items():
        value = defaults.get(name)
        if (
            "choices" in spec
            and value in spec["choices"]
            or "low" in spec
            and fits(value, float)
            and spec["low"] <= value <= spec["high"]
        ):
            first[name] = value
    return first


# ----- the search -----------------------------------------------------------------------------
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
    return _report(optuna, study, out, quiet)


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
        settings = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise LstmgenError(
            f"{out} is not a tune directory (no readable {STATE_FILE}); start one with "
            f"lstmgen tune SOURCES --out {out} --trial-time 60s"
        ) from None
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
            with _without_final_line():
                result = train(
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
        shown = ", ".join(f"{k} {_short(v)}" for k, v in params.items())
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


@contextlib.contextmanager
def _without_final_line():
    """A trial's own closing line ("stopped (max time) after ...") is not shown: the tune
    prints one line per trial. Anything else the trial says (warnings) still is."""
    caught = io.StringIO()
    try:
        with contextlib.redirect_stderr(caught):
            yield
    finally:
        for line in caught.getvalue().splitlines():
            if not line.startswith("stopped ("):
                say(line)


def _seconds(trial) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# ----- results --------------------------------------------------------------------------------
def _report(optuna, study, out: Path, quiet: bool) -> dict:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise LstmgenError(
            f"no trial of {out} finished; give the trials more time (--trial-time) and "
            f"continue with: lstmgen tune --resume {out}"
        )
    best = study.best_trial
    run = out / "trials" / f"{best.number:04d}"
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    best_record = {
        "trial": best.number,
        "bits_per_char": best.value,
        "params": best.params,
        "run": str(run),
    }
    config["tune"] = best_record
    (out / "best.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    _plots(optuna, study, out, len(complete))
    if not quiet:
        _print_table(study, optuna)
        print(
            f"best: trial {best.number}, {best.value:.4f} bits/char -> {out / 'best.json'}; "
            f"train with it: lstmgen train SOURCES --config {out / 'best.json'} --max-time ...",
            flush=True,
        )
    return best_record


def _plots(optuna, study, out: Path, complete: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as views

    pictures = [("history.png", views.plot_optimization_history)]
    if complete >= 2:  # importances compare trials
        pictures.append(("importances.png", views.plot_param_importances))
    for name, draw in pictures:
        try:
            axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # e.g. one value everywhere
            say(f"warning: {name} not drawn ({e})")
            continue
        axes.figure.set_size_inches(8, 4.5)
        axes.figure.tight_layout()
        axes.figure.savefig(out / name, dpi=90)
        matplotlib.pyplot.close(axes.figure)


def _print_table(study, optuna) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lstmgen tune: trials, best first")
    names = [n for n in DEFAULT_SPACE if any(n in t.params for t in study.trials)]
    names += sorted({k for t in study.trials for k in t.params} - set(names))
    for column in ("trial", "state", "bits/char", *names):
        table.add_column(SHORT.get(column, column), justify="right")

    def key(t):  # finished trials by their score, then the pruned and failed ones
        return (t.state != optuna.trial.TrialState.COMPLETE, t.value or 0.0)

    for t in sorted(study.get_trials(deepcopy=False), key=key):
        value = "" if t.value is None else f"{t.value:.4f}"
        cells = [_short(t.params[n]) if n in t.params else "" for n in names]
        table.add_row(str(t.number), t.state.name.lower(), value, *cells)
    Console(highlight=False, width=max(Console().width, 120)).print(table)
