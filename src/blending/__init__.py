"""Blending: finished experiments loaded, the blend search, the ensemble run and its report, recipes, fold models on
new rows, bundles. May import: core, competition, model, training."""
