"""tqdm bars that stay readable in logs: redrawn live on a terminal, every 30 s when piped to a file; under torchrun
only rank 0 draws them."""
import os
import sys

from tqdm.auto import tqdm


def progress(iterable=None, **kwargs):
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30)
    kwargs.setdefault("disable", os.environ.get("RANK", "0") != "0")  # RANK: set by torchrun
    return tqdm(iterable, **kwargs)
