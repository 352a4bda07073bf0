"""What a study found: the table of the best trials and the optimisation plots."""
import warnings
from pathlib import Path

import numpy as np

from competition.metrics import LOWER_IS_BETTER
from core.artifacts import atomic_write
from tuning.study import first_line

TOP_N = 5


def format_value(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def summary(study, metric):
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    done.sort(key=lambda t: t.value, reverse=metric not in LOWER_IS_BETTER)
    lines = [f"{len(trials)} trials: {counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
             f"{counts[TrialState.FAIL]} failed, {counts[TrialState.RUNNING]} running"]
    if done:
        lines.append(f"top {min(TOP_N, len(done))} by {metric}:")
        lines.append(f"{'trial':>6}  {'state':<8}  {metric:>10}  params")
        for t in done[:TOP_N]:
            params = " ".join(f"{k}={format_value(v)}" for k, v in t.params.items())
            lines.append(f"{t.number:>6}  {t.state.name:<8}  {t.value:>10.4f}  {params}")
    return "\n".join(lines), done


def save_plots(study, out_dir, n_complete):
    """Optimisation history and parameter importances as PNG (matplotlib, Agg). Returns the written paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    written = []
    for filename, plot, needed in (("tune_history.png", ovm.plot_optimization_history, 1),
                                   ("tune_importance.png", ovm.plot_param_importances, 2)):
        path = Path(out_dir) / filename
        if n_complete < needed:
            print(f"{filename}: skipped (needs {needed} completed trials, have {n_complete})")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = plot(study)
            fig = ax.figure if hasattr(ax, "figure") else np.ravel(ax)[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
            plt.close(fig)
            written.append(path)
        except Exception as e:
            plt.close("all")
            print(f"{filename}: skipped ({first_line(e)})")
    return written
