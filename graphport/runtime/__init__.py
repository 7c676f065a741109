"""Hosts that run converted graphs outside this process (Essentia's libtensorflow 2.5 C API)."""
