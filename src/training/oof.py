"""Out-of-fold assembly: every fold's validation logits put back in train order (oof.csv), test logits per fold
(test.csv), metrics.json with the overall CV (and, distilled, its teacher and test-file score), and the CV table."""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from competition.metrics import score
from core.artifacts import BASELINE, logits_frame, write_csv, write_json
from core.errors import UserError
from training.distil import distil_report


def fold_outputs(exp, fold_list, train_ids):
    """[(fold, train-row positions of its validation rows, valid logits, test logits, result.json)] of the folds in
    `fold_list`: what the OOF of a whole CV (assemble) and of a tuning trial's folds (tuning.objective) are built
    from."""
    position = {i: p for p, i in enumerate(train_ids)}
    out = []
    for k in fold_list:
        valid_ids, valid_logits, test_logits, result = exp.load_fold(k)
        out.append((k, [position[i] for i in valid_ids], valid_logits, test_logits, result))
    return out


def assemble(cfg, comp, folds, exp, metric, start_from, verbose=True):
    """OOF logits aligned with train ids, test logits per fold, metrics.json with the overall CV."""
    ids = comp.train_ids
    oof = np.zeros((len(ids), len(comp.classes)), dtype=np.float32)
    filled = np.zeros(len(ids), dtype=bool)
    test_frames, fold_results, fold_test_logits = [], [], []
    for k, rows, valid_logits, test_logits, result in fold_outputs(exp, range(cfg["n_folds"]), ids):
        if (folds[rows] != k).any():
            raise UserError(f"{exp.fold(k)} was trained on other folds than {cfg['input_dir']}/folds.csv; "
                            f"delete {exp.root} to retrain")
        oof[rows], filled[rows] = valid_logits, True
        test_frames.append(logits_frame(comp.test_ids, test_logits, comp.classes, fold=k))
        fold_results.append(result)
        fold_test_logits.append(test_logits)
    if not filled.all():
        raise UserError(f"{exp.root}: OOF logits are missing for {int((~filled).sum())} train rows")
    overall = score(comp.task, comp.y, oof)
    write_csv(exp.root / "oof.csv", logits_frame(ids, oof, comp.classes, fold=folds))
    write_csv(exp.root / "test.csv", pd.concat(test_frames, ignore_index=True))
    metrics = {"cv": overall[metric], "metric": metric, "scores": overall, "folds": fold_results,
               "init": start_from, "n_folds": cfg["n_folds"], "task": comp.task,
               "classes": [str(c) for c in comp.classes],
               "seconds": round(sum(r.get("seconds", 0) for r in fold_results), 1),
               "pseudo_label": cfg.get("pseudo_label") or None,
               **distil_report(cfg, comp, fold_results, fold_test_logits)}
    write_json(exp.root / "metrics.json", metrics)
    if verbose:
        print_cv_table(cfg["name"], metrics, cfg["models_dir"])
    return metrics


def print_cv_table(name, metrics, models_dir="models"):
    keys = list(metrics["scores"])
    print(f"\nCV of {name} (selected by {metrics['metric']}):")
    print(f"{'':>10} " + " ".join(f"{k:>10}" for k in keys))
    for r in metrics["folds"]:
        print(f"{'fold ' + str(r['fold']):>10} " + " ".join(f"{r[k]:>10.4f}" for k in keys))
    print(f"{'overall':>10} " + " ".join(f"{metrics['scores'][k]:>10.4f}" for k in keys))
    if metrics.get("test_scores"):  # distilled, with input/solution.csv (training/distil.py): trust this row
        print(f"{'test file':>10} " + " ".join(f"{metrics['test_scores'].get(k, float('nan')):>10.4f}" for k in keys)
              + "  (solution.csv; the distilled CV above leans optimistic)")
    baseline = Path(models_dir) / BASELINE / "metrics.json"
    if baseline.exists() and name != BASELINE:
        b = json.loads(baseline.read_text())["scores"]
        print(f"{'tfidf':>10} " + " ".join(f"{b.get(k, float('nan')):>10.4f}" for k in keys))
    print(f"outputs: {Path(models_dir) / name}/ (metrics.json, oof.csv, test.csv, fold*/)")
