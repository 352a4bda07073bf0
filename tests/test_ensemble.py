"""Ensembling on tiny fake competitions with fake experiment folders (seeded random logits, no training)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blending.blend_search import blend, blend_loss, fitted_weights
from blending.blender import run_ensemble
from competition.data import load_competition
from competition.metrics import is_better, probabilities, score, score_probabilities
from core.artifacts import logits_frame, write_json
from core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

LABELS = ["cat", "dog", "eel"]


def make_comp(root, kind="single", n_train=90, n_test=24, n_folds=3, seed=0):
    """input/ with train, test (rows shuffled against the sample's order), sample submission and folds.csv.
    Returns (input_dir, data_config, true test label(s) by id: a label, or a set of labels for multi-label)."""
    rng = np.random.default_rng(seed)
    inp = root / "input"
    inp.mkdir(parents=True)
    ids = [f"{i:05d}" for i in range(n_train + n_test)]
    if kind == "single":
        y = rng.integers(0, len(LABELS), n_train + n_test)
        y[:len(LABELS)] = np.arange(len(LABELS))
    else:
        y = (rng.random((n_train + n_test, len(LABELS))) < 0.4).astype(int)
        y[y.sum(1) == 0, 0] = 1
    train = pd.DataFrame({"id": ids[:n_train], "text": [f"text {i}" for i in range(n_train)]})
    sample_ids = ids[n_train:]
    test = pd.DataFrame({"id": sample_ids, "text": [f"test {i}" for i in range(n_test)]}).sample(frac=1, random_state=seed)
    config = root / "data.yaml"
    if kind == "single":
        train["label"] = [LABELS[i] for i in y[:n_train]]
        sample = pd.DataFrame({"id": sample_ids, "label": LABELS[0]})
    elif kind == "multi":
        for j, c in enumerate(LABELS):
            train[c] = y[:n_train, j]
        sample = pd.DataFrame({"id": sample_ids, **{c: 0.5 for c in reversed(LABELS)}})  # own column order
    else:
        train["tags"] = ["|".join(c for c, v in zip(LABELS, row) if v) for row in y[:n_train]]
        sample = pd.DataFrame({"id": sample_ids, "tags": LABELS[0]})
        config.write_text('label_delimiter: "|"\n')
    train.to_csv(inp / "train.csv", index=False)
    test.to_csv(inp / "test.csv", index=False)
    sample.to_csv(inp / "sample_submission.csv", index=False)
    pd.DataFrame({"id": ids[:n_train], "fold": np.arange(n_train) % n_folds}).to_csv(inp / "folds.csv", index=False)
    truth = [LABELS[v] if kind == "single" else {c for c, b in zip(LABELS, v) if b} for v in y[n_train:]]
    return inp, config, dict(zip(ids[n_train:], truth))


def write_experiment(models, name, comp, folds, truth, strength, seed, classes=None, best_params=None):
    """models/<name>/ in the layout experiment.assemble writes: oof.csv, test.csv, metrics.json, config.yaml."""
    rng = np.random.default_rng(seed)
    k = len(comp.classes)
    y = comp.y if comp.task == "multi" else np.eye(k)[comp.y]
    oof = strength * (2 * y - 1) + rng.normal(0, 1.5, (len(y), k))
    y_test = np.array([[c in truth[i] if comp.task == "multi" else c == truth[i] for c in comp.classes]
                       for i in comp.test_ids], dtype=float)
    classes = classes or [str(c) for c in comp.classes]
    n_folds = int(folds.max()) + 1
    root = models / name
    test_frames = [logits_frame(comp.test_ids, strength * (2 * y_test - 1) + rng.normal(0, 1.0, y_test.shape), classes, fold=f)
                   for f in range(n_folds)]
    root.mkdir(parents=True)
    logits_frame(comp.train_ids, oof, classes, fold=folds).to_csv(root / "oof.csv", index=False)
    pd.concat(test_frames, ignore_index=True).to_csv(root / "test.csv", index=False)
    overall = score(comp.task, comp.y, oof)
    metric = "accuracy" if comp.task == "single" else "micro_f1"
    per_fold = [{"fold": f, **score(comp.task, comp.y[folds == f], oof[folds == f])} for f in range(n_folds)]
    write_json(root / "metrics.json", {"cv": overall[metric], "metric": metric, "scores": overall, "folds": per_fold,
                                       "init": f"/ckpt/{name}", "n_folds": n_folds, "task": comp.task,
                                       "classes": classes, "seconds": 1.0})
    (root / "config.yaml").write_text(f"name: {name}\n")
    if best_params:
        (root / "best_params.yaml").write_text("".join(f"{k}: {v}\n" for k, v in best_params.items()))
    return oof


@pytest.fixture
def single(tmp_path):
    inp, config, truth = make_comp(tmp_path, "single")
    comp = load_competition(inp, config, verbose=False)
    folds = pd.read_csv(inp / "folds.csv")["fold"].to_numpy()
    models = tmp_path / "models"
    write_experiment(models, "good", comp, folds, truth, 2.0, 1, best_params={"lr": 3e-5, "llrd_decay": 0.9})
    write_experiment(models, "weak", comp, folds, truth, 0.6, 2)
    write_experiment(models, "noise", comp, folds, truth, 0.0, 3)
    write_experiment(models, "tfidf-baseline", comp, folds, truth, 0.8, 4)
    kw = dict(input_dir=str(inp), models_dir=str(models), data_config=str(config), submissions_dir=str(tmp_path / "sub"))
    return comp, folds, truth, kw


def read_sub(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_single_label_submission_matches_sample_in_sample_order(single):
    comp, folds, truth, kw = single
    assert comp.test_ids != comp.sample["id"].tolist()  # test.csv order differs from the sample's
    result = run_ensemble(["good", "weak"], **kw)
    sub = read_sub(result["submission"])
    assert list(sub.columns) == list(comp.sample.columns)
    assert sub["id"].tolist() == comp.sample["id"].tolist()
    assert sub["label"].tolist() == [truth[i] for i in sub["id"]]  # mapped by id, decoded to strings


def test_every_method_is_scored_and_the_best_held_out_one_is_submitted(single):
    comp, folds, truth, kw = single
    result = run_ensemble(["good", "weak", "noise"], **kw)
    metric, methods = result["metric"], result["methods"]
    assert set(methods) == {"best_single", "equal", "fitted", "forward", "stacking"}
    w = methods["fitted"]["weights"]
    assert min(w.values()) >= 0 and abs(sum(w.values()) - 1) < 1e-6 and w.get("noise", 0) < w["good"]
    held = {m: r["held_out_scores"][metric] for m, r in methods.items()}
    assert not any(is_better(metric, v, held[result["method"]]) for v in held.values())
    assert result["cv"] == held[result["method"]] and result["pick"].startswith("Pick ")
    # the submitted method's fold-held-out OOF, read back from the file, gives the reported CV
    oof = pd.read_csv(kw["submissions_dir"] + "/ensemble_oof.csv", dtype={"id": str})
    assert oof["id"].tolist() == comp.train_ids
    assert score_probabilities("single", comp.y, oof[LABELS].to_numpy())[metric] == pytest.approx(result["cv"])


def test_fit_weights_lowers_loss():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    good = probabilities("single", 3 * np.eye(3)[y] + rng.normal(0, 1, (200, 3)))
    bad = probabilities("single", rng.normal(0, 1, (200, 3)))
    w = fitted_weights("single", y, [good, bad], "accuracy")
    assert (w >= 0).all() and w.sum() == pytest.approx(1) and w[0] > 0.9
    assert blend_loss("single", y, [good, bad], w) < blend_loss("single", y, [good, bad], [0.5, 0.5])
    assert blend([good, bad], w).sum(1) == pytest.approx(np.ones(200))


def test_default_selection_takes_the_baseline_and_skips_other_folds(single, capsys):
    comp, folds, truth, kw = single
    write_experiment(Path(kw["models_dir"]), "shifted", comp, (folds + 1) % 3, truth, 2.0, 5)
    result = run_ensemble(**kw)
    out = capsys.readouterr().out
    assert result["experiments"] == ["good", "noise", "tfidf-baseline", "weak"]
    assert "skipped shifted" in out and "fold" in out
    result = run_ensemble(include_baseline=False, **kw)
    assert result["experiments"] == ["good", "noise", "weak"] and result["baseline"]["accuracy"] > 0
    assert "skipped tfidf-baseline" in capsys.readouterr().out


def test_named_experiments_from_other_folds_are_refused(single):
    comp, folds, truth, kw = single
    write_experiment(Path(kw["models_dir"]), "shifted", comp, (folds + 1) % 3, truth, 2.0, 5)
    with pytest.raises(UserError, match="shifted.*fold"):
        run_ensemble(["good", "shifted"], **kw)
    assert not (Path(kw["submissions_dir"]) / "submission.csv").exists()


def test_mismatched_classes_are_refused(single):
    comp, folds, truth, kw = single
    write_experiment(Path(kw["models_dir"]), "renamed", comp, folds, truth, 2.0, 6, classes=["cat", "dog", "fox"])
    with pytest.raises(UserError, match="renamed.*classes"):
        run_ensemble(["good", "renamed"], **kw)


def test_earlier_submission_is_kept(single):
    comp, folds, truth, kw = single
    sub_dir = Path(kw["submissions_dir"])
    sub_dir.mkdir()
    (sub_dir / "submission.csv").write_text("id,label\nhand,made\n")
    first = run_ensemble(["weak"], **kw)
    first_text = Path(first["submission_copy"]).read_text()
    second = run_ensemble(["good", "noise"], average="logit", **kw)
    assert first["submission_copy"] != second["submission_copy"]
    assert Path(first["submission_copy"]).read_text() == first_text != Path(second["submission_copy"]).read_text()
    assert (sub_dir / "submission.csv").read_text() == Path(second["submission_copy"]).read_text()
    copies = sorted(p.read_text() for p in sub_dir.glob("submission-*.csv"))
    assert "id,label\nhand,made\n" in copies and len(copies) == 3


def test_report_and_plots_are_written(single):
    comp, folds, truth, kw = single
    run_ensemble(["good", "weak"], include_baseline=False, **kw)
    sub_dir = Path(kw["submissions_dir"])
    report = (sub_dir / "report.md").read_text()
    for text in ("good", "weak", "ENSEMBLE", "tfidf-baseline", "/ckpt/good", "lr=3e-05", "llrd_decay=0.9", "fold 2"):
        assert text in report
    for png in ("fold_scores.png", "confusion.png"):
        assert (sub_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((sub_dir / "ensemble.json").read_text())
    assert saved["experiments"] == ["good", "weak"] and saved["method"] in saved["methods"]
    if saved["weights"] is None:  # stacking: a meta-model instead of weights
        assert saved["method"] == "stacking" and saved["recipe"]["stacker"] is not None
    else:
        assert saved["weights"] and set(saved["weights"]) <= {"good", "weak"}
        assert sum(saved["weights"].values()) == pytest.approx(1.0)
        assert saved["weights"] == saved["methods"][saved["method"]]["weights"]
    assert "## Methods" in report and "**submitted**" in report and saved["pick"] in report
    assert f"| tfidf-baseline | {saved['baseline']['accuracy']:.4f} |" in report


@pytest.mark.parametrize("kind", ["multi", "delimited"])
def test_multilabel_submissions(tmp_path, kind):
    inp, config, truth = make_comp(tmp_path, kind)
    comp = load_competition(inp, config, verbose=False)
    folds = pd.read_csv(inp / "folds.csv")["fold"].to_numpy()
    models = tmp_path / "models"
    write_experiment(models, "a", comp, folds, truth, 3.0, 1)
    write_experiment(models, "b", comp, folds, truth, 1.0, 2)
    result = run_ensemble(None, str(inp), str(models), str(config), str(tmp_path / "sub"))
    sub = read_sub(result["submission"])
    assert list(sub.columns) == list(comp.sample.columns)
    assert sub["id"].tolist() == comp.sample["id"].tolist()
    if kind == "multi":
        prob = sub[LABELS].astype(float).to_numpy()
        assert ((prob >= 0) & (prob <= 1)).all()
        assert ((prob >= 0.5) == np.array([[c in truth[i] for c in LABELS] for i in sub["id"]])).mean() > 0.95
    else:
        assert all(v and set(v.split("|")) <= set(LABELS) for v in sub["tags"])
        assert np.mean([set(v.split("|")) == truth[i] for i, v in zip(sub["id"], sub["tags"])]) > 0.8
    assert (tmp_path / "sub" / "report.md").exists() and (tmp_path / "sub" / "fold_scores.png").exists()
    assert not (tmp_path / "sub" / "confusion.png").exists()


def test_cli_prints_one_line_error_and_exits_2(single):
    comp, folds, truth, kw = single
    proc = subprocess.run([sys.executable, str(ROOT / "src" / "ensemble.py"), "missing", "--input-dir", kw["input_dir"],
                           "--models-dir", kw["models_dir"], "--data-config", kw["data_config"]],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith("error:") and "missing" in err and "\n" not in err
