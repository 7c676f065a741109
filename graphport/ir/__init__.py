"""ir: the intermediate representation between ONNX and TF, and the only code that reads or writes ONNX graphs:
reading a model (from_onnx.py, subgraphs included), the Node/Value Graph with lint() and PassResult, symbolic
dims, attributes with schema defaults, the one op registry, and IR back to protobufs for ONNX's own tools.
It imports only `core`."""
