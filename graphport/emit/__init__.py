"""Back ends that turn the optimised IR into a target graph."""
