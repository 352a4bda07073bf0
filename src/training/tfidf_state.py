"""A fitted TF-IDF baseline (the pipelines training/tfidf.py `tfidf_model` builds) as plain data and back, never
pickled: tfidf.json (each object's class, constructor parameters and fitted attributes as JSON) and tfidf.npz (their
arrays: idf, coefficients, scaler moments, the vocabularies as UTF-8 bytes with offsets; read with
allow_pickle=False). Only the classes those pipelines use are accepted; anything else is refused by name.

An object is rebuilt as its class called with the saved parameters, then given every attribute fitting set on it
(vars() less the parameters), so predict and transform see what they saw after fit."""
import json
from pathlib import Path

import numpy as np
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import LabelBinarizer, StandardScaler

from core.artifacts import atomic_write, write_json
from core.errors import UserError
from training.tfidf_fields import CrossFieldFeatures

FORMAT, VERSION = "tfidf-baseline-state", 1
JSON_NAME, ARRAYS_NAME = "tfidf.json", "tfidf.npz"
# _ConstantPredictor: OneVsRest's stand-in for a label that is constant in the fold's training rows
CLASSES = {c.__name__: c for c in (Pipeline, FeatureUnion, ColumnTransformer, TfidfVectorizer, TfidfTransformer,
                                   CrossFieldFeatures, StandardScaler, LogisticRegression, OneVsRestClassifier,
                                   _ConstantPredictor, LabelBinarizer, Ridge)}
SKIPPED = {"_stop_words_id"}  # id() of the stop-word list in the fitting process: meaningless elsewhere
PLAIN = (str, bool, int, float, type(None))
DTYPES = {"float64": np.float64, "float32": np.float32}  # TfidfVectorizer's dtype parameter


class Writer:
    """Encodes values as JSON, moving arrays into `arrays` (named a0, a1, ...)."""

    def __init__(self):
        self.arrays = {}

    def array(self, a):
        a = np.asarray(a)
        if a.dtype.kind == "O":  # e.g. a ColumnTransformer's column names: plain values in JSON
            return {"objects": [self.value(x) for x in a.ravel().tolist()], "shape": list(a.shape)}
        if a.dtype.kind not in "biufcUS":
            raise UserError(f"the TF-IDF baseline state cannot hold an array of dtype {a.dtype}")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = a
        return {"array": key}

    def vocabulary(self, vocab):
        """term -> column as the terms' UTF-8 bytes in column order and their offsets (exact, no padding)."""
        terms = sorted(vocab, key=vocab.get)
        if [vocab[t] for t in terms] != list(range(len(terms))):
            raise UserError("the TF-IDF baseline state needs a vocabulary numbered 0..n-1")
        encoded = [t.encode("utf-8", "surrogatepass") for t in terms]
        offsets = np.cumsum([0] + [len(e) for e in encoded], dtype=np.int64)
        return {"vocabulary": [self.array(np.frombuffer(b"".join(encoded), dtype=np.uint8))["array"],
                               self.array(offsets)["array"]]}

    def estimator(self, obj):
        name = type(obj).__name__
        if CLASSES.get(name) is not type(obj):
            raise UserError(f"the TF-IDF baseline state cannot hold a {type(obj).__module__}.{name}: only "
                            f"{', '.join(sorted(CLASSES))}")
        params = obj.get_params(deep=False)
        fitted = {k: v for k, v in vars(obj).items() if k not in params and k not in SKIPPED}
        return {"estimator": name, "params": {k: self.value(v) for k, v in params.items()},
                "fitted": {k: self.vocabulary(v) if k == "vocabulary_" else self.value(v) for k, v in fitted.items()}}

    def value(self, v):
        if isinstance(v, np.generic):
            return {**self.array(v), "scalar": True}
        if isinstance(v, np.ndarray):
            return self.array(v)
        if isinstance(v, PLAIN):
            return v
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, tuple):
            return {"tuple": [self.value(x) for x in v]}
        if isinstance(v, slice):
            return {"slice": [self.value(x) for x in (v.start, v.stop, v.step)]}
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"dict": {k: self.value(x) for k, x in v.items()}}
        if isinstance(v, type) and v in DTYPES.values():
            return {"dtype": np.dtype(v).name}
        if hasattr(v, "get_params"):
            return self.estimator(v)
        raise UserError(f"the TF-IDF baseline state cannot hold a {type(v).__name__} ({v!r:.60})")


def read_value(v, arrays):
    """The inverse of Writer.value."""
    if isinstance(v, list):
        return [read_value(x, arrays) for x in v]
    if not isinstance(v, dict):
        return v
    if "estimator" in v:
        return read_estimator(v, arrays)
    if "array" in v:
        a = arrays[v["array"]]
        return a[()] if v.get("scalar") else a
    if "objects" in v:
        out = np.empty(len(v["objects"]), dtype=object)
        out[:] = [read_value(x, arrays) for x in v["objects"]]
        return out.reshape(v["shape"])
    if "vocabulary" in v:
        blob, offsets = (arrays[k] for k in v["vocabulary"])
        data = blob.tobytes()
        bounds = zip(offsets[:-1], offsets[1:])
        return {data[a:b].decode("utf-8", "surrogatepass"): i for i, (a, b) in enumerate(bounds)}
    (tag, x), = v.items()
    if tag == "tuple":
        return tuple(read_value(y, arrays) for y in x)
    if tag == "slice":
        return slice(*(read_value(y, arrays) for y in x))
    if tag == "dict":
        return {k: read_value(y, arrays) for k, y in x.items()}
    if tag == "dtype":
        return DTYPES[x]
    raise UserError(f"the TF-IDF baseline state holds an unknown value {tag!r}: written by a newer version?")


def read_estimator(v, arrays):
    cls = CLASSES.get(v["estimator"])
    if cls is None:
        raise UserError(f"the TF-IDF baseline state holds a {v['estimator']}, which this code cannot rebuild")
    obj = cls(**{k: read_value(x, arrays) for k, x in v["params"].items()})
    for k, x in v["fitted"].items():
        setattr(obj, k, read_value(x, arrays))
    return obj


def model_state(model):
    """(JSON-able dict, arrays) of a fitted baseline pipeline."""
    writer = Writer()
    state = {"format": FORMAT, "version": VERSION, "sklearn": sklearn.__version__, "model": writer.value(model)}
    return state, writer.arrays


def model_from_state(state, arrays):
    """The fitted pipeline that `model_state` described."""
    if state.get("format") != FORMAT or state.get("version") != VERSION:
        raise UserError(f"not a TF-IDF baseline state of version {VERSION} (format {state.get('format')!r}, "
                        f"version {state.get('version')!r})")
    return read_value(state["model"], arrays)


def has_state(folder):
    return (Path(folder) / JSON_NAME).exists() and (Path(folder) / ARRAYS_NAME).exists()


def save_state(model, folder):
    """folder/tfidf.npz, then folder/tfidf.json (each written atomically; the JSON names the arrays)."""
    state, arrays = model_state(model)

    def write(path):
        with open(path, "wb") as f:  # a file object: np.savez given a name would add .npz to the temp name
            np.savez_compressed(f, allow_pickle=False, **arrays)
    atomic_write(Path(folder) / ARRAYS_NAME, write)
    write_json(Path(folder) / JSON_NAME, state)


def load_state(folder):
    """The fitted pipeline saved in `folder` (arrays read with allow_pickle=False)."""
    folder = Path(folder)
    state = json.loads((folder / JSON_NAME).read_text())
    with np.load(folder / ARRAYS_NAME, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if state.get("sklearn") != sklearn.__version__:
        print(f"{folder}: TF-IDF baseline saved with scikit-learn {state.get('sklearn')}, read with "
              f"{sklearn.__version__}")
    return model_from_state(state, arrays)
