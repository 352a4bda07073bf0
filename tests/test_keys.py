"""One source of truth for every key: bad values refused before any work with one line naming the key, dotted keys
for nested groups, `--keys`, and the README tables generated from the same registry."""
import subprocess
import sys
from pathlib import Path

import pytest

from competition.data import load_data_settings
from core.cli import run_cli
from core.config import DEFAULTS, load_config, value_of, with_values
from core.errors import UserError
from core.keys import BASELINE_KEYS, DATA_KEYS, EXPERIMENT_KEYS, README_END, README_START, readme_section
from core.search_space import parse_search_space

ROOT = Path(__file__).resolve().parents[1]

BAD = [
    ("epochs", "0"), ("epochs", "2.5"), ("batch_size", "0"), ("grad_accum", "0"), ("eval_batch_size", "0"),
    ("lr", "-1e-5"), ("lr", "0"), ("n_folds", "1"), ("max_len", "4"), ("max_len", "long"), ("truncation", "middle"),
    ("pooling", "sum"), ("dropout", "1.5"), ("llrd_decay", "0"), ("warmup_ratio", "2"), ("amp", "fp8"),
    ("ema_decay", "1"), ("msd_samples", "0"), ("reinit_layers", "-1"), ("pad_to_multiple_of", "0"),
    ("gradient_checkpointing", "maybe"), ("itpt_mlm_probability", "0"), ("itpt_epochs", "0"), ("seed", "x"),
    ("adversarial", "fgm"), ("adversarial.kind", "pgd"), ("adversarial.eps", "-1"), ("adversarial.start_epoch", "0"),
    ("pseudo_label.min_confidence", "0.2"), ("pseudo_label.max_share", "0"),
    ("search_space", "{lr: {low: 1, high: 0}}"), ("search_space", "{adversarial.kind: [fgm, pgd]}"),
]


@pytest.mark.parametrize("key, value", BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_a_bad_value_is_one_line_naming_the_key_and_exit_2(key, value, capsys):
    with pytest.raises(SystemExit) as ended:
        run_cli(lambda: load_config(None, [f"{key}={value}"]))
    err = capsys.readouterr().err.strip()
    assert ended.value.code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert key.split(".")[-1] in err


def test_a_bad_value_in_a_yaml_file_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 2.5\nadversarial: {kind: fgm, eps: -1}\n")
    with pytest.raises(UserError, match="epochs: 2.5 is not allowed; epochs takes a whole number of at least 1"):
        load_config(path)


@pytest.mark.parametrize("text, key", [("task: ranking\n", "task"), ("empty_text: ignore\n", "empty_text"),
                                       ("text_columns: {a: 1}\n", "text_columns"), ("sep: [1]\n", "sep")])
def test_bad_data_yaml_values_name_the_file_and_key(tmp_path, text, key):
    path = tmp_path / "data.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=f"{path}: {key}: "):
        load_data_settings(path)


def test_baseline_keys_are_checked():
    with pytest.raises(UserError, match="C: 0.0 is not allowed"):
        load_config(None, ["C=0"], extra_keys=BASELINE_KEYS)
    cfg = load_config(None, ["max_features=5000"], extra_keys=BASELINE_KEYS)
    assert cfg["C"] == 10.0 and cfg["max_features"] == 5000


def test_good_values_are_coerced_as_before():
    cfg = load_config(None, ["lr=1e-5", "epochs=3.0", "gradient_checkpointing=yes", "itpt_extra_files=a.txt",
                             "max_len=128", "attention_dropout=null"])
    assert cfg["lr"] == 1e-5 and cfg["epochs"] == 3 and isinstance(cfg["epochs"], int)
    assert cfg["gradient_checkpointing"] is True and cfg["itpt_extra_files"] == ["a.txt"]
    assert cfg["max_len"] == 128 and cfg["attention_dropout"] is None


def test_every_shipped_config_loads_unchanged():
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        cfg = load_config(path)
        assert set(cfg) == set(DEFAULTS), path


def test_dotted_keys_set_inside_their_group_and_search_spaces_take_them():
    cfg = load_config(None, ["adversarial.kind=awp", "adversarial.eps=0.01"])
    assert cfg["adversarial"] == {"kind": "awp", "eps": 0.01} and value_of(cfg, "adversarial.eps") == 0.01
    space = parse_search_space({"adversarial.eps": {"low": 0.1, "high": 2.0}, "adversarial.kind": ["fgm", "awp"]})
    assert space["adversarial.eps"] == ("float", 0.1, 2.0, False, None)
    assert space["adversarial.kind"] == ("categorical", ["fgm", "awp"])
    trial = with_values(dict(cfg), {"adversarial.eps": 0.5, "lr": 3e-5})
    assert trial["adversarial"] == {"kind": "awp", "eps": 0.5} and trial["lr"] == 3e-5
    assert cfg["adversarial"]["eps"] == 0.01, "the original config is not changed"
    with pytest.raises(UserError, match="did you mean 'adversarial.eps'"):
        load_config(None, ["adversarial.esp=1"])


def test_keys_flag_prints_every_key_with_type_default_and_help():
    proc = subprocess.run([sys.executable, str(ROOT / "src" / "train.py"), "--keys"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for spec in EXPERIMENT_KEYS:
        line = next(line for line in proc.stdout.splitlines() if line.split()[:1] == [spec.name])
        assert spec.allowed() in line and repr(spec.default) in line
        assert spec.help in proc.stdout
    assert "adversarial.eps" in proc.stdout and "[optimiser]" in proc.stdout
    data = subprocess.run([sys.executable, str(ROOT / "src" / "train.py"), "--keys", "data"], capture_output=True,
                          text=True, timeout=300)
    assert all(spec.name in data.stdout for spec in DATA_KEYS) and "epochs" not in data.stdout


def test_readme_tables_are_the_registry():
    text = (ROOT / "README.md").read_text()
    block = text[text.index(README_START):text.index(README_END) + len(README_END)]
    assert block == readme_section(), "README's Config keys tables differ from src/core/keys.py: run " \
                                      "python bench/readme_keys.py"
