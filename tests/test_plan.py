"""Which experiments run.sh trains: gpu-only lines, the CPU estimate, extra requirement files."""
import pandas as pd
import pytest

from core.errors import UserError
from helpers import write_competition
from training import experiment_list as plan


@pytest.fixture
def listed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_competition(tmp_path / "input", n_train=100, n_test=10)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/small.yaml").write_text("backbone: splade-tiny\n")
    (tmp_path / "configs/base.yaml").write_text("backbone: mpnet-base\nmax_len: 512\nepochs: 3\nn_folds: 5\n")
    (tmp_path / "configs/experiments.txt").write_text(
        "# a comment\nconfigs/small.yaml\n\nconfigs/base.yaml   gpu  # base size\n")
    return "configs/experiments.txt"


def test_gpu_lines_run_only_with_cuda(listed):
    assert plan.plan(listed, has_cuda=True) == ["configs/small.yaml", "configs/base.yaml"]
    assert plan.plan(listed, has_cuda=False) == ["configs/small.yaml"]


def test_cpu_plan_says_how_to_add_the_gpu_experiment_and_how_long(listed, capsys, monkeypatch):
    monkeypatch.setattr(plan.os, "cpu_count", lambda: 2)
    plan.plan(listed, has_cuda=False)
    note = capsys.readouterr().err
    assert "python src/train.py configs/base.yaml" in note and "CUDA" in note
    precision = "bf16" if "bf16," in note else "fp32"
    length = plan.typical_length(pd.read_csv("input/train.csv")[["title", "body"]].agg(" ".join, axis=1), 512)
    assert f"rows of about {length} tokens" in note and length < 60
    hours = plan.cpu_hours(plan.load_config("configs/base.yaml"), 100, 10, 2, precision, length)
    assert f"roughly {hours:.1f} h" in note


def test_cpu_hours_count_training_evaluation_and_prediction():
    cfg = {"backbone": "mpnet-base", "max_len": 512, "n_folds": 5, "epochs": 3}
    rate = plan.CPU_ROWS_PER_S["mpnet-base"]["bf16"][512]
    expected = (1000 * 4 / 5 * 3 * 5 + (1000 * 3 + 200 * 5) / 3) / rate / 3600
    assert plan.cpu_hours(cfg, 1000, 200, 2, "bf16") == pytest.approx(expected)
    assert plan.cpu_hours(cfg, 1000, 200, 2, "fp32") > plan.cpu_hours(cfg, 1000, 200, 2, "bf16")
    assert plan.cpu_hours(dict(cfg, backbone="minilm-l6"), 1000, 200, 2, "bf16") is None


def test_rate_between_measured_lengths_is_between_their_rates():
    fast, slow = plan.CPU_ROWS_PER_S["mpnet-base"]["bf16"][128], plan.CPU_ROWS_PER_S["mpnet-base"]["bf16"][512]
    assert plan.rows_per_s("mpnet-base", 128, 2) == pytest.approx(fast)
    assert slow < plan.rows_per_s("mpnet-base", 256, 2) < fast
    assert plan.rows_per_s("mpnet-base", 512, 4) == pytest.approx(2 * slow)
    assert plan.rows_per_s("minilm-l6", 128, 2) is None


def test_large_backbone_needs_its_requirements_file(listed):
    assert plan.requirements(["configs/small.yaml", "configs/base.yaml"]) == ["requirements-large.txt"]
    assert plan.requirements(["configs/small.yaml"]) == []


def test_bad_list_line_names_file_and_line(tmp_path):
    path = tmp_path / "experiments.txt"
    path.write_text("configs/a.yaml\nconfigs/b.yaml cpu\n")
    with pytest.raises(UserError, match="line 2"):
        plan.read_list(str(path))


def test_typical_length_counts_words_and_stops_at_max_len():
    assert plan.typical_length(["one two three four", "five six"], 512) == round(1.3 * 3) + 2
    assert plan.typical_length(["word " * 1000], 256) == 256
