"""The results of `lstmgen tune`: best.json (the best trial's config, ready for `train
--config`), the history and importance plots, and the table of trials, best first."""

from __future__ import annotations

import json
from pathlib import Path

from lstmgen.errors import LstmgenError, say
from lstmgen.files import read_json
from lstmgen.tuning.space import DEFAULT_SPACE, SHORT, short


def report(optuna, study, out: Path, quiet: bool) -> dict:
    """Write best.json and the plots, print the table unless quiet; return the best trial
    ({"trial", "bits_per_char", "params", "run"})."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise LstmgenError(
            f"no trial of {out} finished; give the trials more time (--trial-time) and "
            f"continue with: lstmgen tune --resume {out}"
        )
    best = study.best_trial
    run = out / "trials" / f"{best.number:04d}"
    config = read_json(run / "config.json", fix="the best trial's run is damaged; tune again")
    if not isinstance(config, dict):
        raise LstmgenError(f"{run / 'config.json'} is damaged; tune again")
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
        cells = [_cell(t, n) for n in names]
        table.add_row(str(t.number), t.state.name.lower(), value, *cells)
    Console(highlight=False, width=max(Console().width, 120)).print(table)


def _cell(trial, name: str) -> str:
    """A trial's setting in the table; a size left to sizing ("auto") shows the one trained."""
    if name not in trial.params:
        return ""
    if trial.params[name] == "auto" and name in trial.user_attrs:
        return f"{trial.user_attrs[name]} (auto)"
    return short(trial.params[name])
