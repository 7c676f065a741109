"""Transformer-era fused ops: Attention, RotaryEmbedding and friends, composed from plain TF ops."""
