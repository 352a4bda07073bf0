"""tqdm bars that stay readable in logs: redrawn live on a terminal, every 30 s when piped to a file."""
import sys

from tqdm.auto import tqdm


def progress(iterable=None, **kwargs):
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30)
    return tqdm(iterable, **kwargs)
