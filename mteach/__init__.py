"""mteach: teach a model with a concept spec instead of labels."""
__version__ = "0.1.0"
