"""Training: device and precision, batching, the prediction loop, targets and losses, the fold trainer and its resume
state, the experiment runner and OOF assembly, pseudo-labels, the TF-IDF baseline, ITPT (masked-LM pre-training and
its cache). May import: core, competition, model."""
