"""tools: measuring what graphport made: `bench` (load and inference in fresh processes per backend), `profile`
(per-op step stats) and the benchmark figure. Libraries for the commands of the same names in `cli/`."""
