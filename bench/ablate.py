"""Runs a named grid of experiments (bench/grids.yaml) on one competition's shared folds and writes a Markdown table:
CV mean +- std over folds, wall time, and the paper's IMDb figure beside the rows it has one for.

    python bench/ablate.py truncation --data ../shared/data/bbc --backbone splade-tiny
    python bench/ablate.py tricks --data ../shared/data/bbc --backbone minilm-l6 --folds 0,1,2 --rows base,all

Finished experiments are skipped and half-finished ones resume, so the same command continues a stopped grid.
Work goes to models/ablate/<data>/ (input/ links the competition's CSVs and holds its folds.csv); the table to
docs/ablations/<data>-<backbone>-<grid>.md and, where docs/experiments.md has the table's markers, there too. Each
finished row's figures are also kept in docs/ablations/<data>-<backbone>-<grid>.json, so that a later session on a
fresh clone (no models/) still tables them and does not train them again (--retrain does, for their fold files); a
row is recalled only while its settings are unchanged.
"""
import argparse
import json
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import RowRecords, machine, test_truth, workspace  # noqa: E402
from core.artifacts import BASELINE, ExperimentDir, write_text  # noqa: E402
from core.cli import parse_folds, run_cli  # noqa: E402
from core.config import DEFAULTS, coerce, load_config, parse_value  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.validation import check_keys  # noqa: E402
from competition.folds import load_or_make_folds  # noqa: E402

GRIDS = ROOT / "bench" / "grids.yaml"
DOC = ROOT / "docs" / "experiments.md"
REFERENCE = "tfidf"
# cost columns, shown where the folds recorded them: header, format
COSTS = {"test": ("test (solution.csv, fold mean)", "{:.4f}"), "train_rows_s": ("train rows/s", "{:.1f}"),
         "peak_rss_gb": ("peak RSS", "{:.2f} GB"), "fold_mb": ("fold model.pt", "{:.1f} MB")}


def load_grid(name, path=GRIDS):
    grids = yaml.safe_load(Path(path).read_text())
    if name not in grids:
        raise UserError(f"no grid '{name}' in {path}; grids: {', '.join(grids)}")
    grid = grids[name]
    grid.setdefault("base", {})
    grid.setdefault("paper", {})
    return grid


ROW_ONLY = ("config", "data", "baseline")  # row keys that are not config keys


def resolve_columns(value, text_columns):
    """A row's data settings with "$1", "$2", ... replaced by the competition's first, second, ... text column."""
    if isinstance(value, str) and value.startswith("$") and value[1:].isdigit():
        return text_columns[int(value[1:]) - 1]
    if isinstance(value, list):
        return [resolve_columns(v, text_columns) for v in value]
    if isinstance(value, dict):
        return {k: resolve_columns(v, text_columns) for k, v in value.items()}
    return value


def row_input(input_dir, row, data, text_columns):
    """The input folder of a row with its own data settings: links to the shared input's files and its folds.csv
    (the same folds), and a data.yaml of the shared one's keys updated by the row's (null removes a key)."""
    base = Path(input_dir)
    settings = read_settings(base / "data.yaml")
    for key, value in resolve_columns(data, text_columns).items():
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    folder = base.parent / f"input-{row}"
    folder.mkdir(parents=True, exist_ok=True)
    if not (base / "folds.csv").exists():
        raise UserError(f"{base}/folds.csv is made before the rows' input folders")
    for f in base.iterdir():
        link = folder / f.name
        if f.name != "data.yaml" and not link.exists():
            link.symlink_to(f.resolve())
    write_text(folder / "data.yaml", yaml.safe_dump(settings, sort_keys=False))
    return folder


def row_config(config_path, grid, row, extra, input_dir, models_dir):
    """The backbone's config (or the row's own `config:` file, for rows that compare backbones), then the grid's base
    keys, the row's keys and --set overrides (which win). A row with `data:` keys reads its own input folder
    (row_input makes it)."""
    keys = dict(grid["rows"][row] or {})
    if keys.get("data") is not None:
        input_dir = Path(input_dir).parent / f"input-{row}"
    keys = {k: v for k, v in keys.items() if k not in ROW_ONLY or k == "config"}
    cfg = load_config(ROOT / keys.pop("config") if "config" in keys else config_path)
    overrides = {**grid["base"], **keys}
    check_keys(overrides, DEFAULTS, f"grid row '{row}'")
    cfg.update(overrides)
    for item in extra:
        key, _, text = item.partition("=")
        check_keys([key], DEFAULTS, "--set")
        cfg[key] = parse_value(text)
    cfg.update({"name": row, "input_dir": str(input_dir), "models_dir": str(models_dir),
                "data_config": str(Path(input_dir) / "data.yaml")})
    cfg = coerce(cfg)
    cfg.pop("search_space", None)  # tune.py's; not a training setting
    return cfg


def fold_summary(exp, folds, keys):
    """Mean and std over folds of each metric, and the summed wall time; None until every fold is done."""
    if not all(exp.fold_done(k) for k in folds):
        return None
    results = [exp.load_fold(k)[3] for k in folds]
    summary = {k: (float(np.mean([r[k] for r in results])), float(np.std([r[k] for r in results]))) for k in keys}
    summary["seconds"] = sum(r.get("seconds", 0.0) for r in results)
    speeds = [r["train_rows_s"] for r in results if r.get("train_rows_s")]
    summary["train_rows_s"] = float(np.mean(speeds)) if speeds else None
    peaks = [r["peak_rss_gb"] for r in results if r.get("peak_rss_gb")]
    summary["peak_rss_gb"] = max(peaks) if peaks else None
    sizes = [(exp.fold(k) / "model.pt").stat().st_size for k in folds if (exp.fold(k) / "model.pt").exists()]
    summary["fold_mb"] = float(np.mean(sizes)) / 1e6 if sizes else None
    return summary


def tfidf_reference(first, folds, keys, models_dir=None, name=BASELINE):
    """src/baseline.py's TF-IDF + logistic regression on the same folds (seconds on a CPU), for scale; or, for a
    `baseline: true` row, on that row's data settings."""
    from core.keys import BASELINE_KEYS
    from training.tfidf import run_baseline
    models_dir = models_dir or Path(first["input_dir"]).parent / "tfidf"
    cfg = load_config(None, [f"name={name}"], extra_keys=BASELINE_KEYS)
    cfg.update({k: first[k] for k in ("input_dir", "data_config", "n_folds", "seed")}, models_dir=str(models_dir))
    exp = ExperimentDir(models_dir, name)
    if fold_summary(exp, folds, keys) is None:
        run_baseline(cfg)
    return fold_summary(exp, folds, keys)


def solution_truth(comp, path):
    """The test answers from the competition folder's solution.csv, or None where it has none for every test id."""
    try:
        return test_truth(comp, path) if path.exists() else None
    except (KeyError, ValueError, IndexError, UserError):
        print(f"note: {path} does not answer every test row; no test column")
        return None


def solution_score(exp, folds, comp, truth, metric):
    """The experiment's test prediction (the mean of its folds' probabilities) scored against the solution."""
    from competition.metrics import probabilities, score_decisions, score_probabilities
    from competition.decision import default_rules
    if truth is None or not all(exp.fold_done(k) for k in folds):
        return None
    prob = np.mean([probabilities(comp.task, exp.load_fold(k)[2]) for k in folds], axis=0)
    scores = {**score_probabilities(comp.task, truth, prob),
              **score_decisions(comp.task, truth, default_rules(comp.task, prob.shape[1]).apply(prob))}
    return scores.get(metric)


def length_facts(cfg, comp):
    """Share of train texts longer than max_len, and than the hierarchical reach (max_chunks x max_len)."""
    from model.backbones import load_tokenizer, resolve_backbone
    from model.truncation import special_tokens, tokenize_texts
    tokenizer = load_tokenizer(resolve_backbone(cfg["backbone"]))
    prefix, suffix = special_tokens(tokenizer)
    lengths = np.array([len(t) for t in tokenize_texts(tokenizer, comp.train_texts, "measure lengths")])
    budget = cfg["max_len"] - len(prefix) - len(suffix)
    return {"median_tokens": int(np.median(lengths)), "p90_tokens": int(np.percentile(lengths, 90)),
            "longer": float((lengths > budget).mean()), "longer_than_chunks": float((lengths > budget * cfg["max_chunks"]).mean())}


def read_settings(path):
    return (yaml.safe_load(Path(path).read_text()) or {}) if Path(path).exists() else {}


def ran_on(exp):
    """The machine a finished row trained on, as recorded when it ran (this machine where nothing was recorded)."""
    path = exp.root / "ablate_machine.txt"
    return path.read_text().strip() if path.exists() else machine()


PATH_KEYS = ("name", "input_dir", "models_dir", "data_config")


def row_signature(cfg, folds, data_settings):
    """What a row's figures depend on: its resolved training settings (paths aside), its folds and its data.yaml."""
    settings = {k: v for k, v in cfg.items() if k not in PATH_KEYS}
    return json.loads(json.dumps({"settings": settings, "folds": list(folds), "data": data_settings},
                                 sort_keys=True, default=str))


def train_row(name, grid, row, cfg, exp, folds, keys):
    """Trains a row's unfinished folds (a half-finished fold resumes); a finished row is left as it is."""
    from training.experiment import run_experiment
    if fold_summary(exp, folds, keys) is not None:
        return
    print(f"\n== {name} / {row}: {grid['rows'][row] or '(base)'}", flush=True)
    started = time.time()
    write_text(exp.root / "ablate_machine.txt", machine())
    if (grid["rows"][row] or {}).get("baseline"):
        tfidf_reference(cfg, folds, keys, exp.root.parent, row)
    else:
        run_experiment(cfg, folds, verbose=False)
    print(f"== {row} took {time.time() - started:.0f}s", flush=True)


def on_record_only(exp, records, row, signature):
    """True (and says so) for a row that finished in an earlier session, on record with these settings, whose
    experiment folder is gone (a fresh clone): it is not trained again unless --retrain asks. A row with a folder
    here trains or resumes as usual."""
    if exp.root.exists() or records.recall(row, signature)[0] is None:
        return False
    print(f"== {row}: finished earlier with these settings (on record in {records.path}); not trained again. "
          f"--retrain trains it, e.g. for the fold logits an ensemble blends", flush=True)
    return True


def row_figures(exp, folds, keys, score, records, signature):
    """(summary, machine) of a row: from its finished folds, scored on the test answers by `score(exp)` and kept in
    the records; else from its record made with the same signature; else (None, None)."""
    summary = fold_summary(exp, folds, keys)
    if summary is not None:
        summary["test"] = score(exp)
        machine_name = ran_on(exp)
        records.keep(exp.root.name, signature, summary, machine_name)
        return summary, machine_name
    summary, machine_name = records.recall(exp.root.name, signature)
    if summary is not None:
        print(f"{exp.root.name}: not in {exp.root.parent}; its figures are read from {records.path} (measured on "
              f"{machine_name})")
    return summary, machine_name


def table(grid, rows, summaries, keys, command, header, text_columns=()):
    lines = [f"`{command}`", "", header, ""]
    paper = any(r in grid["paper"] for r in rows)
    costs = [c for c in COSTS if any(s and s.get(c) for r, s in summaries.items() if r != REFERENCE)]
    lines.append("| row | changes | " + " | ".join(f"{k} (mean +- std)" for k in keys) + " | wall time |"
                 + "".join(f" {COSTS[c][0]} |" for c in costs) + (" paper IMDb error % |" if paper else ""))
    lines.append("|---|---|" + "---:|" * (len(keys) + 1 + len(costs)) + ("---:|" if paper else ""))
    best = {k: max((s[k][0] for r, s in summaries.items() if s and r != REFERENCE), default=None) for k in keys}
    for row in rows + [REFERENCE]:
        s = summaries.get(row)
        changes = ("TF-IDF + logistic regression (src/baseline.py), for scale" if row == REFERENCE else
                   ", ".join(f"{k}: {v}" for k, v in resolve_columns(grid["rows"][row] or {}, list(text_columns)).items())
                   or "(base)")
        cells = [f"{'**' if s[k][0] == best[k] else ''}{s[k][0]:.4f}{'**' if s[k][0] == best[k] else ''} +- {s[k][1]:.4f}"
                 if s else "not run" for k in keys]
        wall = f"{s['seconds'] / 60:.1f} min" if s else ""
        extra = "".join(f" {COSTS[c][1].format(s[c]) if s and s.get(c) else ''} |" for c in costs)
        lines.append(f"| {row} | {changes} | " + " | ".join(cells) + f" | {wall} |" + extra
                     + (f" {grid['paper'].get(row, '')} |" if paper else ""))
    return "\n".join(lines) + "\n"


def publish(key, text, out, doc):
    """Writes <out>/<key>.md and replaces the block between `<!-- table KEY -->` and `<!-- end table -->` in `doc`
    where the marker exists."""
    write_text(Path(out) / f"{key}.md", text)
    doc = Path(doc)
    if not doc.exists():
        return False
    content = doc.read_text()
    pattern = re.compile(rf"(<!-- table {re.escape(key)} -->\n).*?(<!-- end table -->)", re.S)
    if not pattern.search(content):
        return False
    write_text(doc, pattern.sub(lambda m: m.group(1) + text + m.group(2), content))
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", help=f"a grid of {GRIDS.relative_to(ROOT)}")
    parser.add_argument("--data", required=True, help="competition folder (train.csv, test.csv, sample submission)")
    parser.add_argument("--backbone", default="splade-tiny", help="its configs/<backbone>.yaml is the starting config")
    parser.add_argument("--config", default=None, help="starting config instead of configs/<backbone>.yaml")
    parser.add_argument("--rows", default=None, help="comma-separated rows to run (default: all)")
    parser.add_argument("--folds", default=None, help="folds to train, e.g. 0,1,2 (default: all)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override keys for every row")
    parser.add_argument("--work", default=str(ROOT / "models" / "ablate"), help="where experiments are kept")
    parser.add_argument("--grids", default=str(GRIDS), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "docs" / "ablations"), help="folder for the table")
    parser.add_argument("--doc", default=str(DOC), help="document whose table markers are filled")
    parser.add_argument("--retrain", action="store_true",
                        help="train rows that are on record from an earlier session but whose folds are not here")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: write the table of what is finished (the rest shows as not run)")
    args = parser.parse_args()

    from competition.data import load_competition
    from competition.metrics import DECISION_METRICS
    grid = load_grid(args.grid, args.grids)
    rows = args.rows.split(",") if args.rows else list(grid["rows"])
    missing = [r for r in rows if r not in grid["rows"]]
    if missing:
        raise UserError(f"grid '{args.grid}' has no rows {missing}; rows: {', '.join(grid['rows'])}")
    config_path = args.config or ROOT / "configs" / f"{args.backbone}.yaml"
    input_dir = workspace(args.data, args.work)
    data_name = Path(args.data).resolve().name
    models_dir = Path(args.work) / data_name / f"{args.backbone}-{args.grid}"
    cfgs = {r: row_config(config_path, grid, r, args.set, input_dir, models_dir) for r in grid["rows"]}
    first = cfgs[rows[0]]
    folds = parse_folds(args.folds, first["n_folds"]) or list(range(first["n_folds"]))
    comp = load_competition(input_dir, input_dir / "data.yaml", verbose=False)
    load_or_make_folds(comp, first["n_folds"], first["seed"], input_dir / "folds.csv")  # every row's folds
    for r in grid["rows"]:
        if (grid["rows"][r] or {}).get("data") is not None:
            row_input(input_dir, r, grid["rows"][r]["data"], comp.text_columns)
    keys = DECISION_METRICS[comp.task]
    truth = solution_truth(comp, Path(args.data) / "solution.csv")
    metric = keys[0]
    facts = length_facts(first, comp)
    header = (f"{data_name}: {len(comp.train_ids)} train rows, {comp.task}-label, {args.backbone}, folds {folds} of "
              f"{first['n_folds']}; train texts: median {facts['median_tokens']} tokens, 90th percentile "
              f"{facts['p90_tokens']}; {facts['longer']:.0%} longer than max_len {first['max_len']}, "
              f"{facts['longer_than_chunks']:.0%} longer than {first['max_chunks']} chunks of it.")
    print(header, flush=True)
    key = f"{data_name}-{args.backbone}-{args.grid}"
    records = RowRecords(Path(args.out) / f"{key}.json")
    signatures = {r: row_signature(cfgs[r], folds, read_settings(cfgs[r]["data_config"])) for r in grid["rows"]}
    for r in [] if args.table_only else rows:
        exp = ExperimentDir(models_dir, r)
        if args.retrain or not on_record_only(exp, records, r, signatures[r]):
            train_row(args.grid, grid, r, cfgs[r], exp, folds, keys)
    summaries, machines = {}, {}
    for r in grid["rows"]:  # the rows asked for, and every other row of the grid with figures here or on record
        summaries[r], machines[r] = row_figures(
            ExperimentDir(models_dir, r), folds, keys, lambda exp: solution_score(exp, folds, comp, truth, metric),
            records, signatures[r])
    shown = [r for r in grid["rows"] if r in rows or summaries[r] is not None]
    if set(shown) - set(rows):
        header += f" Rows {', '.join(r for r in shown if r not in rows)}: figures of earlier runs of this grid."
    summaries[REFERENCE] = tfidf_reference(first, folds, keys)
    if summaries[REFERENCE] is not None:
        summaries[REFERENCE]["test"] = solution_score(ExperimentDir(Path(input_dir).parent / "tfidf", BASELINE), folds,
                                                      comp, truth, metric)
    header += f" Trained on {' and '.join(sorted({machines[r] for r in shown if summaries[r]}))}."
    command = "python bench/ablate.py " + shlex.join(a for a in sys.argv[1:] if a != "--table-only")
    text = table(grid, shown, summaries, keys, command, header, comp.text_columns)
    in_doc = publish(key, text, args.out, args.doc)
    print("\n" + text + f"\nwritten: {Path(args.out) / key}.md" + (f" and {args.doc}" if in_doc else ""))


if __name__ == "__main__":
    run_cli(main)
