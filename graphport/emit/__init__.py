"""emit: code generation, turning the optimised IR into a target graph (`emit/tf`: flat TF GraphDefs that
libtensorflow 2.5 loads). It imports only `ir` and `core`, and never runs a pass."""
