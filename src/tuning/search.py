"""Optuna search over training settings (`python src/tune.py`): the driver that ties space, study and objective.

Each trial trains the chosen folds (default: fold 0) into a throw-away folder
`models/<name>/tune/<study>/trial-<n>/`, reports every evaluation to Optuna so the MedianPruner can stop
weak trials early, scores the chosen folds' validation logits with the experiment's selection metric and
deletes the trial's weights. Studies live in an Optuna RDB storage (default `sqlite:///models/optuna.db`);
several workers pointed at one PostgreSQL URL share a study."""
from competition.metrics import LOWER_IS_BETTER, competition_metric
from core.errors import UserError
from core.search_space import parse_search_space
from tuning.objective import make_objective, worker_id
from tuning.params import best_params_path, write_best_params
from tuning.report import save_plots, summary
from tuning.space import describe_space
from tuning.study import check_fingerprint, create_study, default_storage, settings_fingerprint, shown_url


def run_tuning(cfg, config_path, n_trials, fold_list=None, storage=None, study_name=None, timeout=None,
               prune=True, seed=None, overrides=()):
    import torch
    from training.experiment import prepare

    space = parse_search_space(cfg.get("search_space"))
    fold_list = [0] if fold_list is None else sorted(set(fold_list))
    comp, _ = prepare(cfg)
    metric = competition_metric(cfg["metric"], comp)
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    storage_url = storage or default_storage(cfg)
    study_name = study_name or cfg["name"]
    study = create_study(storage_url, study_name, direction, cfg["seed"] if seed is None else seed, prune)
    check_fingerprint(study, settings_fingerprint(cfg, space, fold_list), study_name, storage_url)
    before = len(study.trials)
    print(f"study '{study_name}' in {shown_url(storage_url)} ({before} trials so far): {direction} {metric} on "
          f"folds {fold_list}; searching {describe_space(space)}; worker {worker_id()}", flush=True)
    if n_trials > 0 or timeout:
        objective = make_objective(cfg, space, fold_list, comp, metric, study_name)
        oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
        study.optimize(objective, n_trials=n_trials or None, timeout=timeout, catch=(oom,), gc_after_trial=True)

    print(f"\nstudy '{study_name}':")
    table, done = summary(study, metric)
    print(table)
    if not done:
        raise UserError(f"no trial of study '{study_name}' has completed yet, so there are no best values; "
                        f"run more trials (--trials N)")
    best = done[0]
    path = write_best_params(cfg, best.params)
    print(f"best: trial {best.number}, {metric} {best.value:.4f} on folds {fold_list} -> {path}")
    searched = set(best.params)
    kept = [o for o in overrides if o.split("=", 1)[0] not in searched]
    print(f"train with it: python src/train.py {config_path} --params best" + (f" --set {' '.join(kept)}" if kept else ""))
    for p in save_plots(study, best_params_path(cfg).parent, len(done)):
        print(f"plot: {p}")
    return study, best
