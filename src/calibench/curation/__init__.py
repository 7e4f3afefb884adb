"""COLA calibration data curation (He et al., NeurIPS 2025), for any causal LM."""
