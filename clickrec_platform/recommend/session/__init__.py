"""Session-based next-item recommenders and their evaluation protocol, no Dagster.

`protocol` turns events into train/validation/test sessions as the session-based literature does;
`knn` holds SKNN, V-SKNN and STAN on one neighbour-session core; `rules` the sequential rules;
`baselines` popularity; `evaluate` next-item metrics with bootstrap intervals. Import from the
modules: this package re-exports nothing.
"""
