"""What a finished trial leaves behind and what is read from it: predictions, artifacts,
error-analysis reports, importances and the prior-misfit check.
"""
