"""Every config key in one place: its name, type, default, allowed values or range, group and one line of help.

Experiment configs (configs/*.yaml, `--set`), the data YAML (configs/data.yaml or input/data.yaml), the TF-IDF
baseline's keys and the nested groups (`adversarial`, `pseudo_label`, `distil`) are all declared here and checked
by `check`, once, before any work (core/validation.py): a bad value is one UserError naming the key, the value and
what is allowed.
`python src/train.py --keys` prints them; the README's "Config keys" section is generated from them."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    name: str
    type: str                 # str | int | float | bool | list | mapping | group | auto_int
    default: object
    help: str
    group: str = ""
    choices: tuple = None     # allowed values (str keys)
    low: float = None         # lowest allowed value (numbers)
    high: float = None        # highest allowed value
    low_open: bool = False    # low itself not allowed
    high_open: bool = False   # high itself not allowed
    nullable: bool = False    # null (None) allowed besides the type
    fields: tuple = None      # type group: the nested keys

    def allowed(self):
        """What the key takes, in words."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        words = {"str": "a string", "int": "a whole number", "float": "a number", "bool": "true or false",
                 "list": "a list", "mapping": "a mapping", "group": "a mapping of " + ", ".join(
                     f.name for f in self.fields or ()), "auto_int": "auto or a whole number"}[self.type]
        if self.low is not None and self.high is not None:
            words += f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            words += f" {'above' if self.low_open else 'of at least'} {self.low:g}"
        return words + (" or null" if self.nullable else "")


ADVERSARIAL_KEYS = (
    Key("kind", "str", "fgm", "fgm: a step on the word embeddings; awp: on the encoder's weight matrices",
        choices=("fgm", "awp")),
    Key("eps", "float", None, "step size: FGM its L2 norm (default 1.0), AWP its bound relative to |w| (default 1e-3)",
        low=0, low_open=True, nullable=True),
    Key("lr", "float", 1.0, "AWP: step size relative to |w| / |g|", low=0, low_open=True),
    Key("start_epoch", "int", 1, "the first epoch (1-based) with the adversarial step", low=1),
)
LORA_KEYS = (
    Key("r", "int", 8, "rank of each adapter's update", low=1),
    Key("alpha", "float", 16.0, "scale: the update is multiplied by alpha / r", low=0, low_open=True),
    Key("dropout", "float", 0.05, "share of the adapters' input dropped in training", low=0, high=1, high_open=True),
    Key("target_modules", "list", "auto", "auto: every linear layer inside the transformer blocks (Llama, Qwen2, "
        "Gemma-2: the attention and MLP projections); or a list of their names (q_proj, v_proj)"),
)
PSEUDO_LABEL_KEYS = (
    Key("min_confidence", "float", 0.95, "a test row joins when the ensemble's top probability reaches this",
        low=0.5, high=1, high_open=True),
    Key("max_share", "float", 0.3, "at most this share of a fold's training rows are pseudo-labelled",
        low=0, high=1, low_open=True),
    Key("soft", "bool", False, "train on the ensemble's probabilities instead of its labels"),
    Key("source", "str", "submissions/ensemble_test.csv", "the ensemble's test probabilities (src/ensemble.py)"),
)
DISTIL_KEYS = (
    Key("alpha", "float", 0.5, "weight of the true labels' loss; 1 - alpha goes to matching the teacher", low=0,
        high=1),
    Key("temperature", "float", 2.0, "softmax temperature T of the teacher and student (single-label; the KL term "
        "is scaled by T squared)", low=0, low_open=True),
    Key("include_test", "bool", False, "the test rows join every fold's training rows with the teacher's test "
        "probabilities as their only targets"),
    Key("oof", "str", "submissions/ensemble_oof.csv", "the teacher's fold-held-out OOF probabilities "
        "(src/ensemble.py; its ensemble.json beside it)"),
    Key("test", "str", "submissions/ensemble_test.csv", "the teacher's test probabilities (src/ensemble.py)"),
)

EXPERIMENT_KEYS = (
    Key("name", "str", "experiment", "output folder models/<name>/ (default: the config file's name)", group="run"),
    Key("backbone", "str", "splade-tiny", "an alias (splade-tiny, minilm-l6, mpnet-base, smollm2-135m), a Hugging "
        "Face id, a local model folder or a local .gguf file", group="model"),
    Key("init", "str", "pretrained", "pretrained | itpt (its within-task pre-trained checkpoint) | a checkpoint folder",
        group="model"),
    Key("max_len", "auto_int", "auto", "tokens per text; auto: 90th percentile of the train texts, within the "
        "backbone's limit and, on a CPU, a cost cap", group="input", low=8),
    Key("truncation", "str", "head_tail", "which tokens a longer text keeps", group="input",
        choices=("head", "tail", "head_tail", "hierarchical")),
    Key("head_tokens", "int", 128, "head part of head_tail, stated at max_len 512 and scaled", group="input", low=0),
    Key("tta", "str", "none", "swap: predict each row also with the data YAML's `swap` fields exchanged, classes "
        "mapped back, and average", group="input", choices=("none", "swap")),
    Key("swap_augment", "float", 0.0, "share of each fold's training rows trained with the `swap` fields exchanged "
        "and their labels mapped", group="input", low=0, high=1),
    Key("chunk_pool", "str", "mean", "hierarchical only: how chunk vectors are pooled", group="input",
        choices=("mean", "max", "attention")),
    Key("max_chunks", "int", 4, "hierarchical only: chunks of max_len per text", group="input", low=1),
    Key("pooling", "str", "auto", "how token vectors become one; auto: cls for encoders, last (the last real "
        "token) for decoders, which refuse cls and last4_*", group="model",
        choices=("auto", "cls", "last", "mean", "max", "last4_concat", "last4_max", "attention")),
    Key("head", "str", "linear", "linear: a new classifier on the pooled vector; label_words (decoders): the LM "
        "head's logits for the class names after `prompt`, then fine-tuned", group="model",
        choices=("linear", "label_words")),
    Key("prompt", "str", "{text}\nAnswer:", "label_words head only: the template around each text ({text} marks "
        "where; the class name is the answer that follows)", group="model"),
    Key("lora", "group", {}, "LoRA adapters (peft) on the backbone: only they and the head train and are saved; {} "
        "is full fine-tuning", group="model", fields=LORA_KEYS),
    Key("quantize", "str", "none", "4bit | 8bit: the frozen base loaded through bitsandbytes (QLoRA; CUDA only, "
        "with lora)", group="model", choices=("none", "4bit", "8bit")),
    Key("dropout", "float", 0.1, "before the classifier", group="model", low=0, high=1, high_open=True),
    Key("attention_dropout", "float", 0.0, "inside the backbone's attention; null keeps the checkpoint's (0 is "
        "faster on CPU)", group="model", low=0, high=1, high_open=True, nullable=True),
    Key("lr", "float", 2e-5, "learning rate of the top encoder layer (with lora: of the top layer's adapters)", group="optimiser", low=0, low_open=True),
    Key("llrd_decay", "float", 0.95, "layer-wise decay xi: layer k below the top trains at lr * xi**k",
        group="optimiser", low=0, high=1, low_open=True),
    Key("head_lr", "float", 1e-3, "learning rate of the pooling head and classifier", group="optimiser", low=0,
        low_open=True),
    Key("weight_decay", "float", 0.01, "AdamW weight decay (none on biases and LayerNorm)", group="optimiser",
        low=0),
    Key("scheduler", "str", "linear", "learning-rate schedule after warm-up", group="optimiser",
        choices=("linear", "cosine")),
    Key("warmup_ratio", "float", 0.1, "share of the steps spent warming up", group="optimiser", low=0, high=1),
    Key("epochs", "int", 3, "passes over each fold's training rows", group="training", low=1),
    Key("batch_size", "int", 16, "rows per batch (the global batch under torchrun)", group="training", low=1),
    Key("eval_batch_size", "int", 64, "rows per batch when predicting", group="training", low=1),
    Key("pad_to_multiple_of", "int", 16, "batch lengths round up to this (at most max_len): fewer shapes, flat CPU "
        "memory", group="training", low=1),
    Key("grad_accum", "int", 1, "batches per optimizer step", group="training", low=1),
    Key("gradient_checkpointing", "bool", False, "recompute block activations in backward: less memory, about 1/3 "
        "slower", group="training"),
    Key("max_grad_norm", "float", 1.0, "gradient clipping norm", group="training", low=0, low_open=True),
    Key("checkpoint_every", "int", 0, "N: save the fold's training state every N steps; a killed run resumes there",
        group="training", low=0),
    Key("eval_every", "int", 0, "0: evaluate at the end of every epoch; N: every N optimizer steps",
        group="training", low=0),
    Key("loss", "str", "auto", "regression only: auto (mse) | mse | huber | l1", group="training",
        choices=("auto", "mse", "huber", "l1")),
    Key("metric", "str", "auto", "the selection metric; auto: the task's usual one", group="training",
        choices=("auto", "accuracy", "macro_f1", "log_loss", "micro_f1", "roc_auc", "mcrmse", "rmse", "pearson",
                 "qwk")),
    Key("amp", "str", "auto", "auto: bf16/fp16 on CUDA, bf16 on CPUs with native bf16, else fp32", group="training",
        choices=("auto", "bf16", "none")),
    Key("n_folds", "int", 5, "folds of the CV (input/folds.csv is shared by every experiment)", group="run", low=2),
    Key("seed", "int", 42, "seed of the folds, the batches and the weights", group="run"),
    Key("max_train_rows", "int", 0, "0: all rows; N: a random N of each fold's training rows (quick trials)",
        group="run", low=0),
    Key("input_dir", "str", "input", "the competition's files", group="paths"),
    Key("models_dir", "str", "models", "where experiments write", group="paths"),
    Key("data_config", "str", "configs/data.yaml", "the data YAML (input/data.yaml is read where this is missing)",
        group="paths"),
    Key("search_space", "mapping", {}, "tune.py only: {key: {low, high, log, step}} or {key: [choices]}; "
        "nested keys dotted (adversarial.eps)", group="tuning"),
    Key("ema_decay", "float", 0.0, "0: off; e.g. 0.99: evaluate and predict with an EMA of the weights",
        group="tricks", low=0, high=1, high_open=True),
    Key("msd_samples", "int", 1, "multi-sample dropout: average the head over N dropout masks in training",
        group="tricks", low=1),
    Key("reinit_layers", "int", 0, "re-initialise the top N encoder layers before fine-tuning", group="tricks",
        low=0),
    Key("adversarial", "group", {}, "an adversarial step (FGM or AWP) from start_epoch on; {} is off",
        group="tricks", fields=ADVERSARIAL_KEYS),
    Key("pseudo_label", "group", {}, "confident test rows of the last ensemble join every fold's training rows; "
        "{} is off", group="tricks", fields=PSEUDO_LABEL_KEYS),
    Key("distil", "group", {}, "knowledge distillation: train on the true labels and the last ensemble's "
        "probabilities (src/distil.py); {} is off", group="tricks", fields=DISTIL_KEYS),
    Key("itpt_max_len", "int", 128, "ITPT: tokens per MLM sequence (longer texts are cut into several)",
        group="itpt", low=8),
    Key("itpt_epochs", "int", 1, "ITPT: passes over the corpus", group="itpt", low=1),
    Key("itpt_max_steps", "int", 0, "ITPT: 0: itpt_epochs decide; N: stop after N optimizer steps", group="itpt",
        low=0),
    Key("itpt_lr", "float", 5e-5, "ITPT: learning rate", group="itpt", low=0, low_open=True),
    Key("itpt_batch_size", "int", 32, "ITPT: sequences per batch", group="itpt", low=1),
    Key("itpt_mlm_probability", "float", 0.15, "ITPT: share of tokens masked", group="itpt", low=0, high=1,
        low_open=True, high_open=True),
    Key("itpt_whole_word", "bool", False, "ITPT: mask whole words instead of word pieces", group="itpt"),
    Key("itpt_include_test", "bool", True, "ITPT: pre-train on test text too (labels are never used)",
        group="itpt"),
    Key("itpt_extra_files", "list", [], "ITPT: extra in-domain text files, one text per line (IDPT)",
        group="itpt"),
    Key("itpt_holdout", "float", 0.05, "ITPT: share of texts held out to report masked-token loss and perplexity",
        group="itpt", low=0, high=1, high_open=True),
)

DATA_KEYS = (
    Key("train_file", "str", "train.csv", "the training file in input/", group="data"),
    Key("test_file", "str", "test.csv", "the test file in input/", group="data"),
    Key("sample_submission", "str", None, "default: input/sample_submission.csv or any sample_sub*.csv", group="data",
        nullable=True),
    Key("sep", "str", None, "column separator; default: sniffed from each file's header line", group="data",
        nullable=True),
    Key("sample_sep", "str", None, "the sample submission's separator; default: sniffed", group="data",
        nullable=True),
    Key("encoding", "str", "utf-8", "the files' text encoding (e.g. latin-1)", group="data"),
    Key("id_column", "str", None, "default: first column of the sample submission", group="data", nullable=True),
    Key("text_columns", "list", None, "default: test columns other than the id", group="data", nullable=True),
    Key("text_join", "str", "\n", "what joins several text columns", group="data"),
    Key("fields", "list", None, "text fields encoded apart: column names or {column, max_tokens} (a cap on that "
        "field's tokens); with fields only they are text", group="data", nullable=True),
    Key("pair", "list", None, "short for fields: [a, b], two columns encoded as the tokenizer's sentence pair",
        group="data", nullable=True),
    Key("field_markers", "bool", False, "put each field's column name before it (\"title: ...\")", group="data"),
    Key("swap", "list", None, "two interchangeable fields ([response_a, response_b]) for tta: swap and "
        "swap_augment", group="data", nullable=True),
    Key("swap_labels", "mapping", None, "the classes that trade places when the swap fields do ({winner_model_a: "
        "winner_model_b}); others stay", group="data", nullable=True),
    Key("feature_columns", "list", None, "numeric or categorical columns kept out of the text; they feed the "
        "stacking meta-models (logistic, ridge, LightGBM) beside the models' predictions", group="data",
        nullable=True),
    Key("label_columns", "list", None, "default: sample submission columns other than the id", group="data",
        nullable=True),
    Key("label_delimiter", "str", None, "set for one column holding several labels (\"a|b\")", group="data",
        nullable=True),
    Key("group_column", "str", None, "rows sharing a group never straddle folds", group="data", nullable=True),
    Key("empty_text", "str", "warn", "a row whose text is empty", group="data", choices=("warn", "fail")),
    Key("rare_classes", "str", "warn", "a class with fewer rows than folds", group="data", choices=("warn", "fail")),
    Key("task", "str", "auto", "auto: inferred (many numeric values regress); ordinal: a regression scored by QWK",
        group="data", choices=("auto", "single", "multi", "regression", "ordinal")),
    Key("submit_as", "str", "auto", "auto: labels for accuracy/F1, probabilities for log-loss/ROC-AUC",
        group="data", choices=("auto", "labels", "probabilities")),
)

BASELINE_KEYS = (
    Key("C", "float", 10.0, "inverse regularisation of the logistic regression", group="baseline", low=0,
        low_open=True),
    Key("max_features", "int", 200000, "n-grams kept by each TF-IDF vectoriser", group="baseline", low=1),
)

GROUPS = {"experiment": EXPERIMENT_KEYS, "data": DATA_KEYS, "baseline": BASELINE_KEYS}
BY_NAME = {k.name: k for k in EXPERIMENT_KEYS}


def defaults(keys):
    return {k.name: (dict(k.default) if isinstance(k.default, dict) else
                     list(k.default) if isinstance(k.default, list) else k.default) for k in keys}


def describe(keys):
    """Lines for `--keys`: the keys by group (in the order groups first appear), each with its type, default and help."""
    groups = {}
    for spec in keys:
        groups.setdefault(spec.group, []).append(spec)
    lines = []
    for group, specs in groups.items():
        lines += ["", f"[{group}]"]
        for spec in specs:
            lines.append(f"  {spec.name:<24} {spec.allowed():<44} default {spec.default!r}")
            lines.append(f"  {'':<24} {spec.help}")
            for f in spec.fields or ():
                lines.append(f"    {spec.name + '.' + f.name:<22} {f.allowed():<44} default {f.default!r}")
                lines.append(f"    {'':<22} {f.help}")
    return lines[1:]


def markdown(keys):
    """The README table of `keys`."""
    def row(name, spec):
        cells = [f"`{name}`", spec.allowed(), f"`{spec.default!r}`", spec.help]
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    rows = ["| key | takes | default | meaning |", "|---|---|---|---|"]
    for spec in keys:
        rows.append(row(spec.name, spec))
        rows += [row(f"{spec.name}.{f.name}", f) for f in spec.fields or ()]
    return rows


README_START, README_END = "<!-- keys: generated by python bench/readme_keys.py from src/core/keys.py -->", "<!-- /keys -->"


def readme_section():
    """The README's generated block: one table per group of files (experiment configs, data YAML, baseline)."""
    titles = {"experiment": "Experiment configs (`configs/*.yaml`, `--set key=value`, dotted for nested keys)",
              "data": "The data YAML (`configs/data.yaml` or `input/data.yaml`)",
              "baseline": "The TF-IDF baseline (`python src/baseline.py --set C=3`)"}
    lines = [README_START]
    for name, keys in GROUPS.items():
        lines += ["", f"{titles[name]}:", ""] + markdown(keys)
    return "\n".join(lines + ["", README_END])
