"""What several bench/ drivers share (a module, not a script): the machine a figure was measured on, a workspace
linking a competition's files, worker subprocesses that print their result as one RESULT line, the test answers
of a solution.csv, and the records of finished ablation rows."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from core.artifacts import write_text  # noqa: E402
from core.errors import UserError  # noqa: E402


def workspace(data_dir, root):
    """root/<data>/input with links to the competition's files (never solution.csv): folds.csv is written there,
    not into the shared data folder."""
    data_dir = Path(data_dir).resolve()
    if not (data_dir / "train.csv").exists() and not any(data_dir.glob("train.*")):
        raise UserError(f"{data_dir}: no train file; --data takes a competition folder (train.csv, test.csv, ...)")
    input_dir = Path(root) / data_dir.name / "input"
    input_dir.mkdir(parents=True, exist_ok=True)
    for f in data_dir.iterdir():
        link = input_dir / f.name
        if f.is_file() and f.name != "solution.csv" and f.suffix in (".csv", ".tsv", ".txt", ".yaml") and not link.exists():
            link.symlink_to(f)
    return input_dir


def machine():
    """Where experiments run: GPU name, or CPU model and threads; torch and transformers versions."""
    import torch
    import transformers
    cpu = platform.processor() or "cpu"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{cpu}, {torch.get_num_threads()} threads"
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"{where} (OMP_NUM_THREADS={threads}); torch {torch.__version__}, transformers {transformers.__version__}"




def device_description():
    import torch
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"


def run_worker(cmd, label):
    """Runs a worker subprocess and returns the dict it printed as its last `RESULT {json}` line."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{label} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def test_truth(comp, solution_path):
    """The solution's answers in test.csv order (competition/solution.py)."""
    from competition.solution import read_solution
    return read_solution(comp, solution_path)


class RowRecords:
    """Finished rows' figures kept beside the table (<out>/<key>.json, committed with it), so that a table keeps its
    measured rows when models/ is gone (a fresh clone): a row with no finished folds here is read from its record
    when the record was made with the same signature (ablate.py row_signature), and shown as not run otherwise."""

    def __init__(self, path):
        self.path = Path(path)
        self.rows = json.loads(self.path.read_text()) if self.path.exists() else {}

    def recall(self, row, signature):
        rec = self.rows.get(row)
        if not rec or rec["signature"] != signature:
            return None, None
        return {k: tuple(v) if isinstance(v, list) else v for k, v in rec["summary"].items()}, rec["machine"]

    def keep(self, row, signature, summary, machine_name):
        """Adds or replaces one row, read-modify-write: rows another run kept since this one started stay."""
        self.rows = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.rows[row] = {"signature": signature, "summary": summary, "machine": machine_name}
        write_text(self.path, json.dumps(self.rows, indent=1, sort_keys=True) + "\n")
