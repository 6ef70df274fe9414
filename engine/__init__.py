"""The draft-verify engine (PyTorch): the only package that imports torch."""
