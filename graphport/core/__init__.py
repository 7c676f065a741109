"""core: what every room of graphport shares and nothing else: the error hierarchy, atomic file writing, the
`model.json` schema (one reader, one writer) and the version. It imports nothing of graphport's own outside it."""
