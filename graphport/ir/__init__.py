"""The intermediate representation between ONNX and TF."""
