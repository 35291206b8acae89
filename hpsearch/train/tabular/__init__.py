"""The tabular trainer: CSV/parquet data, normalization, the MLP and its ``fit``.
"""
