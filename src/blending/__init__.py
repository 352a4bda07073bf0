"""Blending: finished experiments loaded, the blend search and its meta-models (LightGBM too), the ensemble run and its
report, recipes (one experiment alone too), fold models on new rows, bundles (ONNX graphs too). May import: core, competition, model, training."""
