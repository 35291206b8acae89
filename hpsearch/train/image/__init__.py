"""The image trainer: timm models, data, augmentation and its ``fit``.
"""
