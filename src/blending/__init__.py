"""Blending: finished experiments loaded, the blend search and its meta-models (LightGBM too), the ensemble run and its
report, recipes, fold models on new rows, bundles. May import: core, competition, model, training."""
