"""Training: data and sources, pretrained weights, augmentation, the training loop, calibration,
the OOD gate's fitting, ablations. Built on the serving core (``ml.*``), which never imports this.
"""
