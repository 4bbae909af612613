"""lmzoo: pretrain language models from scratch, fine-tune them on GLUE, publish model-zoo tables."""

__version__ = "0.1.0"
