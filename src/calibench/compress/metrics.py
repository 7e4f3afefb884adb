"""What a compression actually achieved, measured on the weights.

Sparsity is counted on the targeted Linear weights (zeros / all).  Bits per
weight count the code plus the overhead of its scales (16-bit unless the
scheme stores them narrower, e.g. NVFP4's float8 group scales), per group,
per output channel or per tensor as the strategy says, and a zero point when
asymmetric: what a packed checkpoint stores.
"""

from __future__ import annotations

from typing import Any

import torch

from calibench.compress.validate import target_linears


def effective_weight(module: torch.nn.Module) -> torch.Tensor:
    """The weight the module actually computes with: fake-quantized if it carries a scheme.

    llm-compressor keeps float weights plus scales and quantizes on the fly
    in forward; GPTQ already stores dequantized values.  Either way, this
    returns the values the model multiplies by.
    """
    weight = module.weight
    assert isinstance(weight, torch.Tensor), "a Linear's weight is a Parameter"
    weight = weight.detach()
    scheme = getattr(module, "quantization_scheme", None)
    scale = getattr(module, "weight_scale", None)
    if scheme is None or scheme.weights is None or scale is None:
        return weight
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize

    zero_point = getattr(module, "weight_zero_point", None)
    # NVFP4's group scales are relative to a per-tensor global scale; without it every weight rounds to 0
    global_scale = getattr(module, "weight_global_scale", None)
    return fake_quantize(weight, scale, zero_point, scheme.weights, global_scale=global_scale)


def _weights_per_scale(args: Any, shape: torch.Size) -> int:
    """How many weights share one scale under the scheme's strategy."""
    strategy = str(getattr(args, "strategy", "") or "")
    if args.group_size:
        return int(args.group_size)
    if strategy.endswith("tensor"):
        return int(shape[0] * shape[1])
    return int(shape[1])  # per output channel


def achieved(model: Any) -> dict[str, Any]:
    """Overall sparsity and bits per weight over the targeted Linear layers."""
    total = zeros = 0
    bits_total = 0.0
    quantized = 0
    for module in target_linears(model).values():
        weight = effective_weight(module)
        total += weight.numel()
        zeros += weight.numel() - int(torch.count_nonzero(weight))
        scheme = getattr(module, "quantization_scheme", None)
        args = scheme.weights if scheme is not None else None
        if args is None:
            bits_total += 16.0 * weight.numel()
            continue
        quantized += 1
        scale_bits = float(torch.finfo(args.scale_dtype).bits) if getattr(args, "scale_dtype", None) else 16.0
        overhead = scale_bits + (0.0 if args.symmetric else float(args.num_bits))
        bits_total += weight.numel() * (args.num_bits + overhead / _weights_per_scale(args, weight.shape))
    return {
        "target_layers": len(target_linears(model)),
        "quantized_layers": quantized,
        "sparsity": zeros / total if total else 0.0,
        "bits_per_weight": bits_total / total if total else 0.0,
    }
