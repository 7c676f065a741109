"""Detection and sampling ops: grid sampling, ROI pooling, non-maximum suppression, unpooling and image crops."""
