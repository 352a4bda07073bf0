"""Nothing left open or behind: temp files a kill left, figures, file handles, cleanup on any error, logits not read
where a result.json is all that is needed, and processes that share a machine taking their share of its cores."""
import gc
import warnings

import numpy as np
import pytest
import torch

from core import artifacts
from core.artifacts import ExperimentDir, FolderLock
from core.cli import run_cli
from core.errors import UserError
from training import device
from training.experiment import claim_fold
from training.inputs import with_max_len


def test_a_claimed_fold_loses_what_a_kill_left_and_a_fold_held_elsewhere_keeps_it(tmp_path):
    exp = ExperimentDir(tmp_path, "x")
    for k in (0, 1):
        exp.fold(k).mkdir(parents=True)
        for name in (".model.pt.tmp4242", ".resume.pt.tmp4242"):
            (exp.fold(k) / name).write_bytes(b"half written")
    elsewhere = FolderLock(exp.fold(1))  # another process (or machine) training fold 1
    assert elsewhere.acquire()
    locks = {}
    try:
        assert claim_fold(exp, 0, locks) == "train"
        assert claim_fold(exp, 1, locks) != "train"
    finally:
        for lock in [*locks.values(), elsewhere]:
            lock.release()
    assert sorted(p.name for p in exp.fold(0).iterdir()) == [".lock"]
    assert sorted(p.name for p in exp.fold(1).glob(".*.tmp*")) == [".model.pt.tmp4242", ".resume.pt.tmp4242"]


def test_any_error_still_runs_the_cleanup_prints_the_traceback_and_exits_1(monkeypatch, capsys):
    from core import distributed
    left = []
    monkeypatch.setattr(distributed, "leave", left.append)

    def broken():
        raise RuntimeError("something unexpected")
    with pytest.raises(SystemExit) as ended:
        run_cli(broken)
    assert ended.value.code == 1 and left == [1]
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: something unexpected" in err


@pytest.mark.parametrize("raised, code", [(UserError("bad key"), 2), (KeyboardInterrupt(), 130), (SystemExit(2), 2)])
def test_known_endings_keep_their_exit_status_and_clean_up(monkeypatch, capsys, raised, code):
    from core import distributed
    left = []
    monkeypatch.setattr(distributed, "leave", left.append)

    def main():
        raise raised
    with pytest.raises(SystemExit) as ended:
        run_cli(main)
    assert ended.value.code == code and left == [code]
    assert "Traceback" not in capsys.readouterr().err


def test_the_confusion_plot_closes_its_figure(tmp_path):
    import matplotlib.pyplot as plt

    from blending.report import plot_confusion
    plt.close("all")
    plot_confusion(tmp_path / "confusion.png", np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), ["a", "b"])
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG" and plt.get_fignums() == []


def test_fold_logits_are_written_through_closed_files(tmp_path):
    exp = ExperimentDir(tmp_path, "x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp.save_fold(0, ["a", "b"], np.ones((2, 3)), np.zeros((4, 3)), {"fold": 0})
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], "a file was left for the GC to close"
    _, valid, test, _ = exp.load_fold(0)
    assert valid.dtype == np.float32 and valid.shape == (2, 3) and test.shape == (4, 3)
    assert sorted(p.name for p in exp.fold(0).iterdir()) == ["result.json", "test_logits.npy", "valid_ids.json",
                                                              "valid_logits.npy"]


def test_auto_max_len_of_finished_folds_reads_no_logits(tmp_path, monkeypatch, capsys):
    exp = ExperimentDir(tmp_path, "x")
    exp.save_fold(0, ["a"], np.ones((1, 2)), np.ones((1, 2)), {"fold": 0, "max_len": 96})
    monkeypatch.setattr(artifacts.np, "load", lambda *a, **k: pytest.fail("logits read to learn max_len"))
    cfg = {"max_len": "auto", "n_folds": 2, "truncation": "head", "head_tokens": 128}
    assert with_max_len(cfg, [10, 200, 50], "unused", exp)["max_len"] == 96
    assert "as the finished folds" in capsys.readouterr().out


def test_processes_sharing_the_machine_take_their_share_of_the_cores(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(device.os, "cpu_count", lambda: 8)
    try:
        assert device.share_cores({}) == before  # not told: torch's default stays
        assert device.share_cores({"SHARE_CORES": "2"}) == 4 == torch.get_num_threads()
        assert device.share_cores({"SHARE_CORES": "16"}) == 1
        for bad in ("0", "two", "-1"):
            with pytest.raises(UserError, match="SHARE_CORES"):
                device.share_cores({"SHARE_CORES": bad})
    finally:
        torch.set_num_threads(before)
