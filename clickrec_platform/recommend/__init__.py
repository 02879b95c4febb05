"""Recommenders with honest evaluation: plain functions and classes, no Dagster.

`data` turns `gold.training_splits` into matrices and held-out truth, `models` fits and ranks,
`metrics` and `evaluate` score with bootstrap CIs, `gate` decides promotion, `report` compares,
`tracking` records runs in MLflow. Import from the modules; this package re-exports nothing, so
importing it stays cheap (no matplotlib, no MLflow) for code that needs one piece.
"""
