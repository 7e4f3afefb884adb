"""Fold weight-only fake quantization into the weights, for fast evaluation of an in-memory model.

After llm-compressor's oneshot, a weight-only quantized Linear keeps its
float weight plus scales, and compressed-tensors' forward quantize-dequantizes
that weight again on *every* call (for RTN the weight is not even on the grid
yet).  Evaluating such a model re-does identical work per batch: about 15% of
a GPTQ W4 cell's evaluation time on CPU for SmolLM2.

Folding computes that quantize-dequantize once, writes it into the weight and
switches the module's quantized forward off.  The forward then multiplies by
exactly the tensor it used to compute each call, so outputs are unchanged.
Only modules whose scheme quantizes weights alone are folded: a scheme with
input or output activation quantization (W8A8) keeps its forward, since
switching it off would drop the activation quantization too.  The model is
changed in place and can no longer be saved as a compressed checkpoint, so
this is for throwaway copies (the study runner's), never for ``compress``.
"""

from __future__ import annotations

from typing import Any


def weight_only_scheme(module: Any) -> Any | None:
    """The module's quantization scheme when it quantizes weights and nothing else."""
    scheme = getattr(module, "quantization_scheme", None)
    if scheme is None or scheme.weights is None:
        return None
    if scheme.input_activations is not None or scheme.output_activations is not None:
        return None
    return scheme


def fold_weight_quantization(model: Any) -> int:
    """Fold every weight-only fake-quantized module of ``model``; return how many were folded."""
    import torch
    from compressed_tensors.quantization import QuantizationStatus
    from compressed_tensors.quantization.lifecycle.forward import forward_quantize

    folded = 0
    with torch.no_grad():
        for module in model.modules():
            scheme = weight_only_scheme(module)
            if scheme is None or not getattr(module, "quantization_enabled", True):
                continue
            status = getattr(module, "quantization_status", None)
            if status is None or status >= QuantizationStatus.COMPRESSED:
                continue
            weight = module.weight
            weight.data.copy_(forward_quantize(module, weight.data, "weight", scheme.weights))
            module.quantization_enabled = False
            folded += 1
    return folded
