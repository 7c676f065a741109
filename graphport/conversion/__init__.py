"""conversion: the ONNX -> TF pipeline as a whole: read, optimise, emit, size the dims to verify at, verify against
ONNX Runtime under both oneDNN settings, write the artifacts atomically. Also the ONNX backend (for the
conformance suite) and the bundled example job. It composes `ir`, `passes`, `emit` and `runtime`; nothing below
imports it."""
