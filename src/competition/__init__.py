"""The competition: its data files and columns, folds, metrics, decision rules and the submission format. May import:
core."""
