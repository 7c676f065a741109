"""Quantized ops, computed as ONNX Runtime computes them (round half to even, saturation)."""
