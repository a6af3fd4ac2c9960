"""Pure-PyTorch model package: configs, preprocessing, model, checkpoints, inference.

Nothing here imports Django; the worker, the CLIs and the tests all use it.
"""
