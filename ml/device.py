"""Where the model runs and at what precision: shared by serving (``ml.inference``) and training.

``pick_device`` resolves ``auto`` to CUDA when present, else the CPU; ``for_inference`` puts a
model in its serving state there; ``resolve_precision`` and ``autocast`` give the forward
passes' autocast dtype (bf16 by default on CUDA, fp32 on a CPU).
"""

import torch

# The autocast dtype of each precision of ml.constants.PRECISIONS ("auto" is resolved per device first).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(preference="auto"):
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def for_inference(model, device):
    """Eval mode on ``device``, channels-last (oneDNN's convolutions run markedly faster in that
    layout), weights frozen: no forward pass records a graph for them."""
    return model.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)


def resolve_precision(precision, device):
    """``precision`` checked against :data:`PRECISIONS`; ``auto`` is bf16 on CUDA (tensor cores), fp32 elsewhere."""
    if precision == "auto":
        precision = "bf16" if torch.device(device).type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
    return precision


def autocast(device, precision):
    """The autocast context of a forward pass on ``device``: bf16/fp16 where asked, a no-op for fp32."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype or torch.float32,
                          enabled=dtype is not None)
