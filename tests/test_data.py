import numpy as np
import pandas as pd
import pytest

from competition.data import load_competition
from core.config import load_config
from core.errors import UserError
from helpers import write_competition


def test_zero_config_inference(tmp_path):
    write_competition(tmp_path)
    comp = load_competition(tmp_path, tmp_path / "absent.yaml", verbose=False)
    assert comp.id_column == "id" and comp.label_columns == ["label"] and comp.text_columns == ["title", "body"]
    assert comp.task == "single" and comp.classes == ["money", "sports", "tech"]
    assert [comp.classes[i] for i in comp.y] == comp.train["label"].tolist()
    assert comp.train_texts[0] == comp.train["title"][0] + "\n" + comp.train["body"][0]


def test_data_yaml_sep_and_join(tmp_path):
    write_competition(tmp_path)
    for name in ("train", "test"):
        df = pd.read_csv(tmp_path / f"{name}.csv")
        df.to_csv(tmp_path / f"{name}.csv", sep="\t", index=False)
    (tmp_path / "data.yaml").write_text('sep: "\\t"\ntext_join: ". "\n')
    comp = load_competition(tmp_path, tmp_path / "data.yaml", verbose=False)
    assert comp.train_texts[0] == comp.train["title"][0] + ". " + comp.train["body"][0]


def test_ids_keep_leading_zeros_and_int_labels_sort_numerically(tmp_path):
    pd.DataFrame({"id": ["007", "010", "2"], "text": ["a", "b", "c"], "y": ["10", "2", "1"]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"id": ["0001"], "text": ["d"]}).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"id": ["0001"], "y": ["1"]}).to_csv(tmp_path / "sample_submission.csv", index=False)
    comp = load_competition(tmp_path, None, verbose=False)
    assert comp.train_ids == ["007", "010", "2"] and comp.test_ids == ["0001"]
    assert comp.classes == ["1", "2", "10"] and comp.y.tolist() == [2, 1, 0]


def test_multilabel_columns_and_delimited_labels(tmp_path):
    write_competition(tmp_path, multilabel=True)
    comp = load_competition(tmp_path, None, verbose=False)
    assert comp.task == "multi" and comp.classes == ["sports", "tech", "money"]
    assert comp.y.shape == (120, 3) and set(np.unique(comp.y)) <= {0, 1}

    other = tmp_path / "delim"
    other.mkdir()
    pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"], "tags": ["cs|math", "math"]}).to_csv(other / "train.csv", index=False)
    pd.DataFrame({"id": ["c"], "text": ["z"]}).to_csv(other / "test.csv", index=False)
    pd.DataFrame({"id": ["c"], "tags": ["cs"]}).to_csv(other / "sample_submission.csv", index=False)
    (other / "data.yaml").write_text("label_delimiter: '|'\n")
    comp = load_competition(other, other / "data.yaml", verbose=False)
    assert comp.task == "multi" and comp.classes == ["cs", "math"] and comp.y.tolist() == [[1, 1], [0, 1]]


def test_misspelt_column_suggests_closest(tmp_path):
    write_competition(tmp_path)
    (tmp_path / "data.yaml").write_text("text_columns: [titel, body]\n")
    with pytest.raises(UserError, match=r"no column 'titel' \(did you mean 'title'.*set `text_columns:` in (\S+)") as e:
        load_competition(tmp_path, tmp_path / "data.yaml", verbose=False)
    assert str(e.value).endswith(f"in {tmp_path / 'data.yaml'}")  # the YAML that was read, not always configs/


def test_missing_file_and_duplicate_ids(tmp_path):
    with pytest.raises(UserError, match="train.csv not found"):
        load_competition(tmp_path, None, verbose=False)
    write_competition(tmp_path)
    df = pd.read_csv(tmp_path / "train.csv")
    df.loc[1, "id"] = df.loc[0, "id"]
    df.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(UserError, match="duplicate ids"):
        load_competition(tmp_path, None, verbose=False)


def test_unknown_config_key_lists_valid_ones(tmp_path):
    (tmp_path / "c.yaml").write_text("lr: 1e-5\nllrd_decy: 0.9\n")
    with pytest.raises(UserError, match="llrd_decy.*did you mean 'llrd_decay'.*valid keys"):
        load_config(tmp_path / "c.yaml")
    cfg = load_config(tmp_path / "c.yaml" if False else None, ["lr=3e-5", "epochs=2", "pooling=mean"])
    assert cfg["lr"] == 3e-5 and cfg["epochs"] == 2 and cfg["pooling"] == "mean"
    with pytest.raises(UserError, match="pooling"):
        load_config(None, ["pooling=median"])


def test_pad_multiple_below_one_is_refused():
    assert load_config(None, ["pad_to_multiple_of=8"])["pad_to_multiple_of"] == 8
    with pytest.raises(UserError, match="pad_to_multiple_of: 0 is not allowed; pad_to_multiple_of takes a whole number of at least 1"):
        load_config(None, ["pad_to_multiple_of=0"])
