"""Shared CLI plumbing: clean one-line errors with exit status 2, Ctrl-C as one line, torchrun processes ended
cleanly."""
import sys
import traceback


def run_cli(main):
    """main() with clean endings: a UserError as one line and exit 2, Ctrl-C as one line and exit 130, any other
    error with its traceback and exit 1. Whatever happens, finish() runs (under torchrun: distributed.leave)."""
    from core.errors import UserError
    code, result = 1, None
    try:
        result = main()
        code = 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted: finished folds are kept; run the same command again to continue", file=sys.stderr)
        code = 130
    except SystemExit as e:  # argparse (--help, usage errors) and sys.exit(): their own status
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except Exception:
        traceback.print_exc()  # exit status 1, after the cleanup below
    finally:
        finish(code)
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
    from core.errors import UserError
    try:
        folds = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--folds expects a list like 0,2 or 'all', got '{text}'")
    bad = [k for k in folds if not 0 <= k < n_folds]
    if bad:
        raise UserError(f"--folds {bad} out of range for n_folds={n_folds}")
    return folds
