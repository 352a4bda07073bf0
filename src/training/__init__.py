"""Training: device and precision, batching, the prediction loop, targets and losses, the fold trainer with its hooks
(tricks) and resume state, the experiment runner, its inputs and OOF assembly, the experiments list, pseudo-labels,
distillation of the ensemble into one model, the TF-IDF baseline (per field too), ITPT (masked-LM pre-training and
its cache). May import: core, competition, model."""
