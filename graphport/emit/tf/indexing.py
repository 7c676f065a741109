"""Indexing ops: gathers and scatters by index tensors, TopK, NonZero, OneHot, Trilu and friends."""
