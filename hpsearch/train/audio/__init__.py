"""The audio trainer: log-mel data, SpecAugment, the audio model and its ``fit``.
"""
