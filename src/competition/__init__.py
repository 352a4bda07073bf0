"""The competition: its data files and columns, text fields, labels, side features, folds, metrics, decision rules
and the submission format. May import: core."""
