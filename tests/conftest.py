import pytest


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Lines tests leave in config.summary_lines (e.g. the fuzzing pass's count) show in every run's summary."""
    for line in getattr(config, "summary_lines", []):
        terminalreporter.write_line(line)


def pytest_sessionfinish(session):
    """Under pytest-xdist (`bash run.sh test` runs 2+ workers) a worker hands its summary lines to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["summary_lines"] = getattr(session.config, "summary_lines", [])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    config = node.config
    config.summary_lines = getattr(config, "summary_lines", []) + getattr(node, "workeroutput", {}).get("summary_lines", [])
