"""The model: backbones (aliases, split packages), the classifier with its pooling heads and attention, truncation,
optimiser and LLRD, training tricks. May import: core, competition."""
