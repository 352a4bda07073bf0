"""Side features (data YAML `feature_columns:`): numeric or categorical columns that are not text. They feed the
stacking meta-models beside the models' OOF probabilities (blending/blend_search.py, blending/gbm_stacker.py).

A column whose every non-empty value is a number is numeric: standardised with the mean and standard deviation of
the rows it is fitted on, a missing value set to the mean and flagged in a column of its own. Any other column is
categorical: one-hot over its MAX_CATEGORIES most frequent values, every other (or unseen) value in an `other`
column. The encoder is fitted inside each meta-model's fit, so a fold's meta-model never sees that fold's rows."""
import numpy as np
import pandas as pd

MAX_CATEGORIES = 30


def as_numbers(values):
    return pd.to_numeric(values.astype("string").str.strip(), errors="coerce")


def is_numeric(values):
    present = values.notna() & (values.astype("string").str.strip() != "")
    numbers = as_numbers(values)
    return bool(present.any()) and bool(numbers[present].notna().all())


class FeatureEncoder:
    """Side-feature columns -> a float matrix, with every learned number kept in `state()` (JSON, no pickle)."""

    def __init__(self, specs=None):
        self.specs = specs or []

    def fit(self, frame):
        self.specs = []
        for column in frame.columns:
            values = frame[column]
            if is_numeric(values):
                numbers = as_numbers(values)
                std = float(numbers.std(ddof=0)) if numbers.notna().sum() > 1 else 0.0
                self.specs.append({"column": column, "kind": "number", "mean": float(numbers.mean()),
                                   "std": std if std > 0 else 1.0, "missing": bool(numbers.isna().any())})
            else:
                counts = values.fillna("").astype(str).value_counts()
                self.specs.append({"column": column, "kind": "category",
                                   "values": [str(v) for v in counts.index[:MAX_CATEGORIES]]})
        return self

    def transform(self, frame):
        parts = []
        for spec in self.specs:
            values = frame[spec["column"]]
            if spec["kind"] == "number":
                numbers = as_numbers(values).to_numpy(dtype=np.float64, na_value=np.nan)
                missing = np.isnan(numbers)
                parts.append(((np.where(missing, spec["mean"], numbers) - spec["mean"]) / spec["std"])[:, None])
                if spec["missing"]:
                    parts.append(missing[:, None].astype(np.float64))
            else:
                text = values.fillna("").astype(str).to_numpy()
                known = np.stack([text == v for v in spec["values"]], axis=1).astype(np.float64)
                parts.append(np.concatenate([known, 1.0 - known.sum(1, keepdims=True)], axis=1))
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(frame), 0))

    def names(self):
        out = []
        for spec in self.specs:
            if spec["kind"] == "number":
                out += [spec["column"]] + ([f"{spec['column']}:missing"] if spec["missing"] else [])
            else:
                out += [f"{spec['column']}={v}" for v in spec["values"]] + [f"{spec['column']}=other"]
        return out

    def state(self):
        return {"specs": self.specs}

    @classmethod
    def from_state(cls, state):
        return cls(state["specs"])


def describe_features(frame):
    """One line for the ensemble's output: which columns are numeric and which categorical."""
    kinds = {c: "number" if is_numeric(frame[c]) else f"category ({frame[c].nunique()} values)" for c in frame.columns}
    return "side features: " + ", ".join(f"{c} {k}" for c, k in kinds.items())
