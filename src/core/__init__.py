"""The core: the error users can fix, the key registry and the checking of values against it, experiment configs, the
search space check, CLI plumbing, artifacts on disk, progress bars, torchrun support. May import: none."""
