def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Lines tests leave in config.summary_lines (e.g. the fuzzing pass's count) show in every run's summary."""
    for line in getattr(config, "summary_lines", []):
        terminalreporter.write_line(line)
