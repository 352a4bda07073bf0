"""Tuning (Optuna): search space, study and storage, objective, report and plots, best params. May import: core,
competition, model, training."""
