"""`python src/tune.py`: Optuna search on generated data with splade-tiny (fold 0 of 2, one short epoch per trial);
resuming, diverged trials, `train.py --params best`, and two workers sharing one study on a real PostgreSQL."""
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml

from core.config import load_config
from core.errors import UserError
from core.search_space import parse_search_space
from helpers import write_workspace
from tuning.objective import remove_weights
from tuning.params import resolve_params
from tuning.search import run_tuning
from tuning.study import open_storage

pytestmark = pytest.mark.slow  # end-to-end: `bash run.sh test -m "not slow"` skips this module

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """name: tiny
backbone: splade-tiny
max_len: 32
truncation: head
pooling: mean
head_lr: 3.0e-3
epochs: 1
batch_size: 16
eval_every: 2
n_folds: 2
seed: 0
search_space:
  lr: {low: 1.0e-4, high: 3.0e-3, log: true}
  warmup_ratio: {low: 0.0, high: 0.2}
  pooling: [cls, mean]
"""
SEARCHED = {"lr", "llrd_decay", "warmup_ratio", "pooling"}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def run(args, cwd, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "src" / args[0]), *args[1:]], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def load(work, study="tiny", storage=None):
    return optuna.load_study(study_name=study, storage=storage or f"sqlite:///{work}/models/optuna.db")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return write_workspace(tmp_path_factory.mktemp("tune"), CONFIG, n_train=120, n_test=20, seed=3)


@pytest.fixture(scope="module")
def tuned(work):
    proc = run(["tune.py", "configs/tiny.yaml", "--trials", "3"], work)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return work, proc


def test_three_trials_complete_and_best_params_written(tuned):
    work, proc = tuned
    study = load(work)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE  # accuracy
    best = yaml.safe_load((work / "models/tiny/best_params.yaml").read_text())
    assert best == study.best_params and set(best) == SEARCHED
    assert 1e-4 <= best["lr"] <= 3e-3 and 0.8 <= best["llrd_decay"] <= 1.0 and best["pooling"] in ("cls", "mean")
    for t in study.trials:
        assert len(t.intermediate_values) == 2  # eval_every 2 on 4 steps: reported twice for the pruner
        assert t.user_attrs["worker"] == f"{socket.gethostname()}:{t.user_attrs['worker'].split(':')[-1]}"
        assert t.user_attrs["worker"].split(":")[-1].isdigit()
        assert (work / f"models/tiny/tune/tiny/trial-{t.number}/fold0/result.json").exists()
    assert not list((work / "models").rglob("model.pt"))  # trial weights deleted after scoring
    assert not (work / "models/tiny/fold0").exists()  # the real experiment is untouched
    assert "python src/train.py configs/tiny.yaml --params best" in proc.stdout
    assert "3 trials: 3 complete, 0 pruned, 0 failed" in proc.stdout
    assert (work / "models/tiny/tune_history.png").stat().st_size > 1000
    # 3 completed trials over 2 parameters: enough for the importance plot, which must then be written
    assert "tune_importance.png: skipped" not in proc.stdout
    assert (work / "models/tiny/tune_importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_stopped_trial_leaves_no_weights(tmp_path):
    """A pruned trial with checkpoint_every set leaves resume.pt (hundreds of MB for a base model) unless removed."""
    for k in (0, 1):
        (tmp_path / f"fold{k}").mkdir()
        for name in ("model.pt", "resume.pt", "result.json"):
            (tmp_path / f"fold{k}" / name).write_text("x")
    remove_weights(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["result.json", "result.json"]


def test_rerun_resumes_the_study(tuned):
    work, _ = tuned
    first = {t.number: t.params for t in load(work).trials}
    proc = run(["tune.py", "configs/tiny.yaml", "--trials", "1"], work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(3 trials so far)" in proc.stdout
    trials = load(work).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert {t.number: t.params for t in trials[:3]} == first
    assert trials[3].params not in first.values()  # a resumed seeded sampler does not replay trial 0


def test_changed_settings_refused_for_the_same_study(tuned, monkeypatch):
    work, _ = tuned
    monkeypatch.chdir(work)
    before = len(load(work).trials)
    cfg = load_config("configs/tiny.yaml", ["max_len=24"])
    with pytest.raises(UserError, match="other settings.*max_len"):
        run_tuning(cfg, "configs/tiny.yaml", n_trials=1)
    assert len(load(work).trials) == before  # refused before any trial started


def test_diverged_trial_does_not_stop_the_study(tuned):
    work, _ = tuned
    study = optuna.create_study(study_name="diverge", storage=f"sqlite:///{work}/models/optuna.db",
                                direction="maximize")
    study.enqueue_trial({"lr": 1e30, "warmup_ratio": 0.0})  # trial 0 is forced to blow up
    proc = run(["tune.py", "configs/tiny.yaml", "--trials", "2", "--study", "diverge"], work)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    trials = load(work, "diverge").trials
    assert len(trials) == 2
    assert trials[0].state in (optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    assert "diverged" in trials[0].user_attrs
    assert trials[1].state == optuna.trial.TrialState.COMPLETE
    assert "1 pruned" in proc.stdout or "1 failed" in proc.stdout


def test_train_params_best_applies_the_tuned_values(tuned):
    work, _ = tuned
    best = yaml.safe_load((work / "models/tiny/best_params.yaml").read_text())
    proc = run(["train.py", "configs/tiny.yaml", "--params", "best", "--folds", "0", "--set", "llrd_decay=0.5"], work)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    cfg = yaml.safe_load((work / "models/tiny/config.yaml").read_text())
    assert cfg["lr"] == pytest.approx(best["lr"]) and cfg["pooling"] == best["pooling"]
    assert cfg["warmup_ratio"] == pytest.approx(best["warmup_ratio"])
    assert cfg["llrd_decay"] == 0.5  # --set comes after --params
    assert "search_space" not in cfg
    assert (work / "models/tiny/fold0/result.json").exists()
    applied = yaml.safe_load((work / "models/tiny/params_applied.yaml").read_text())
    assert applied["from"].endswith("best_params.yaml") and applied["params"]["lr"] == pytest.approx(best["lr"])


def test_params_best_without_tuning_is_a_clear_error(work, monkeypatch):
    monkeypatch.chdir(work)
    with pytest.raises(UserError, match="best_params.yaml not found.*python src/tune.py configs/tiny.yaml"):
        resolve_params("best", "configs/tiny.yaml", ["name=never-tuned"])
    (work / "bad.yaml").write_text("learning_rate: 1.0e-4\n")
    with pytest.raises(UserError, match="learning_rate"):
        resolve_params(str(work / "bad.yaml"), str(work / "configs/tiny.yaml"))


def test_search_space_parsing():
    space = parse_search_space({"head_lr": {"low": "1e-4", "high": 1e-2, "log": True}, "llrd_decay": None,
                                "pooling": ["cls", "last4_concat"], "epochs": {"low": 1, "high": 4}})
    assert space["lr"] == ("float", 1e-5, 1e-4, True, None)  # default kept
    assert "llrd_decay" not in space  # null removes a default
    assert space["head_lr"] == ("float", 1e-4, 1e-2, True, None)
    assert space["pooling"] == ("categorical", ["cls", "last4_concat"])
    assert space["epochs"][0] == "int"
    for bad, words in [({"learning_rate": {"low": 1, "high": 2}}, "unknown key 'learning_rate'"),
                       ({"lr": {"low": 0.0, "high": 1e-4, "log": True}}, "low > 0"),
                       ({"lr": {"low": 1e-3, "high": 1e-4}}, "below"),
                       ({"pooling": ["cls", "median"]}, "median"),
                       ({"pooling": {"low": 0, "high": 1}}, "list of choices"),
                       ({"name": ["a", "b"]}, "unknown key")]:
        with pytest.raises(UserError, match=words):
            parse_search_space(bad)


def test_unreachable_storage_is_a_clear_error_without_the_password():
    with pytest.raises(UserError, match="cannot open the Optuna storage") as info:
        open_storage("postgresql://tuner:s3cret@127.0.0.1:1/optuna")
    assert "s3cret" not in str(info.value)


# ---------------------------------------------------------------------------------------------- PostgreSQL

def postgres_bindir():
    def version(path):
        try:
            return float(Path(path).parts[-3])
        except ValueError:
            return 0.0
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return Path(initdb).resolve().parent if initdb and pg_ctl else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server():
    """A throw-away PostgreSQL cluster on 127.0.0.1 (run as the postgres user when we are root); yields a URL."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb, pg_ctl); "
                    "install them with: apt-get install -y postgresql")
    psycopg2 = pytest.importorskip("psycopg2")
    as_owner, owner = [], None
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        as_owner = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else None
        if as_owner is None:
            pytest.skip("running as root and runuser is missing")
    base = Path(tempfile.mkdtemp(prefix="optuna-pg-"))
    data, sockets, log = base / "data", base / "sockets", base / "server.log"
    sockets.mkdir()
    if owner:
        for p in (base, sockets):
            os.chown(p, owner.pw_uid, owner.pw_gid)
    pg_ctl = [*as_owner, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run([*as_owner, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--locale=C", "--no-sync"], check=True, capture_output=True, timeout=120)
        port = free_port()
        started = subprocess.run([*pg_ctl, "-l", str(log), "-w", "-t", "60", "-o",
                                  f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                                 capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr + (log.read_text() if log.exists() else "")
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE optuna_test")
        conn.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna_test"
    finally:
        if data.exists():
            subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_one_study_on_postgresql(work, tmp_path):
    with postgres_server() as url:
        logs = [tmp_path / f"worker{i}.log" for i in range(2)]
        procs = []
        for path in logs:
            with open(path, "w") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, str(ROOT / "src/tune.py"), "configs/tiny.yaml", "--trials", "3",
                     "--storage", url, "--study", "shared", "--no-prune", "--set", "epochs=4"],
                    cwd=work, stdout=out, stderr=subprocess.STDOUT))
        try:
            codes = [p.wait(timeout=600) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        assert codes == [0, 0], "\n\n".join(path.read_text()[-3000:] for path in logs)
        storage = url.replace("postgresql://", "postgresql+psycopg2://")
        trials = load(work, "shared", storage).trials
    assert sorted(t.number for t in trials) == list(range(6))  # every trial recorded once
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    by_worker = {}
    for t in trials:
        by_worker.setdefault(t.user_attrs["worker"], []).append(t)
    assert sorted(len(v) for v in by_worker.values()) == [3, 3]  # study total = the sum of both workers' trials
    spans = [(min(t.datetime_start for t in v), max(t.datetime_complete for t in v)) for v in by_worker.values()]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans  # the workers ran at the same time
    assert len({t.params["lr"] for t in trials}) == 6  # no two workers proposed the same trial
    for path in logs:
        assert "best: trial" in path.read_text()  # each worker summarised the shared study and wrote best_params
