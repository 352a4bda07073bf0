"""Shared CLI plumbing: clean one-line errors with exit status 2, Ctrl-C as one line, torchrun processes ended
cleanly."""
import sys


def run_cli(main):
    from core.config import UserError
    try:
        result = main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        finish(2)
    except KeyboardInterrupt:
        print("interrupted: finished folds are kept; run the same command again to continue", file=sys.stderr)
        finish(130)
    finish(0)
    return result


def finish(code):
    """Exits with `code` (0: returns), except that a torchrun process ends here and now (distributed.leave)."""
    if "core.distributed" in sys.modules:
        sys.modules["core.distributed"].leave(code)
    if code:
        sys.exit(code)


def parse_folds(text, n_folds):
    if text in (None, "all"):
        return None
    from core.config import UserError
    try:
        folds = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--folds expects a list like 0,2 or 'all', got '{text}'")
    bad = [k for k in folds if not 0 <= k < n_folds]
    if bad:
        raise UserError(f"--folds {bad} out of range for n_folds={n_folds}")
    return folds
