"""The core: experiment configs and their keys, CLI plumbing, artifacts on disk, progress bars, torchrun support. May
import: none."""
