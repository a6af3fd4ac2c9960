"""The model package, pure PyTorch; nothing here imports Django.

Three layers, each importing only the ones before it:

- the serving core, ``ml.*`` (limits, decoding, preprocessing, presets, the network, checkpoints and
  their parsed card ``ml.card.ModelCard``, device and precision, populations, intended use, the OOD
  gate, heatmaps, ``ml.inference.Predictor``, metrics): what the worker and the web tier use;
- ``ml.training``: data, sources and their recorded splits, augmentation, the training loop,
  calibration, the gate's fitting;
- ``ml.cli``: the commands (``python -m ml.cli.NAME``), argument parsing and printing over the two, with
  their shared flags in ``ml.cli_args``.
"""
