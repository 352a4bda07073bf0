"""tqdm bars that stay readable in logs: redrawn live on a terminal, every 30 s when piped to a file; under torchrun
only rank 0 draws them."""
import sys

from tqdm.auto import tqdm

from distributed import is_main


def progress(iterable=None, **kwargs):
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30)
    kwargs.setdefault("disable", not is_main())
    return tqdm(iterable, **kwargs)
