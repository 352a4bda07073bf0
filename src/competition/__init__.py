"""The competition: its data files and columns, text fields, labels, side features, folds, metrics, decision rules,
the submission format and the test answers where a solution.csv holds them. May import: core."""
