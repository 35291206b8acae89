"""The study database: Optuna's storage, hpsearch's own tables, and the reads, statistics,
caches and exports over them.
"""
