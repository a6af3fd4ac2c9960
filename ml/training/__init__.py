"""Training: data and sources, the splits a card records, pretrained weights, augmentation, the training
loop, calibration, the OOD gate's fitting. Built on the serving core (``ml.*``), which never imports this;
the commands (``ml.cli``) are built on both.
"""
