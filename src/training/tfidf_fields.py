"""The TF-IDF baseline's features for several fields (data YAML `fields:`/`pair:`): one word and one character
vectoriser per field, and cross-field features for every two fields (the cosine of their TF-IDF vectors in one
shared word space, the ratio of their lengths, the share of words they have in common), standardised."""
import itertools

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline, make_union
from sklearn.preprocessing import StandardScaler


def words(max_features):
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=max_features)


def chars(max_features):
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2,
                           max_features=max_features)


class CrossFieldFeatures(BaseEstimator, TransformerMixin):
    """Per pair of fields: TF-IDF cosine, length ratio (shorter / longer, in characters) and word-overlap Jaccard."""

    def __init__(self, columns):
        self.columns = columns

    def fit(self, frame, y=None):
        texts = pd.concat([frame[c] for c in self.columns]).tolist()
        self.vectorizer_ = TfidfVectorizer(sublinear_tf=True).fit(texts)
        return self

    def transform(self, frame):
        vectors = {c: self.vectorizer_.transform(frame[c].tolist()) for c in self.columns}  # rows have unit L2 norm
        sets = {c: [set(t.lower().split()) for t in frame[c]] for c in self.columns}
        lengths = {c: frame[c].str.len().to_numpy(dtype=float) for c in self.columns}
        out = []
        for a, b in itertools.combinations(self.columns, 2):
            out.append(np.asarray(vectors[a].multiply(vectors[b]).sum(axis=1)).ravel())
            longer = np.maximum(lengths[a], lengths[b])
            out.append(np.divide(np.minimum(lengths[a], lengths[b]), longer, out=np.ones_like(longer),
                                 where=longer > 0))
            out.append(np.array([len(x & y) / max(len(x | y), 1) for x, y in zip(sets[a], sets[b])]))
        return np.stack(out, axis=1)

    def get_feature_names_out(self, input_features=None):
        return np.array([f"{a}~{b}:{kind}" for a, b in itertools.combinations(self.columns, 2)
                         for kind in ("cosine", "length_ratio", "jaccard")], dtype=object)


def field_features(columns, max_features):
    """A transformer of a frame with one column per field into the baseline's features."""
    per_field = [(f"{c}_{kind}", make(max_features), c) for c in columns
                 for kind, make in (("words", words), ("chars", chars))]
    cross = [("cross", make_pipeline(CrossFieldFeatures(columns), StandardScaler()), columns)] if len(columns) > 1 else []
    return ColumnTransformer(per_field + cross)


def baseline_inputs(inputs):
    """The baseline's rows: an object array of texts, or with fields a frame with a column per field."""
    columns = getattr(inputs, "columns", None)
    if columns is None:
        return np.array(inputs, dtype=object)
    return pd.DataFrame(dict(zip(columns, inputs.texts)))


def text_features(max_features):
    return make_union(words(max_features), chars(max_features))
