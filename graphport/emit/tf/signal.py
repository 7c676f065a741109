"""Signal ops: window functions, DFT, STFT and MelWeightMatrix (audio front ends inside the graph)."""
