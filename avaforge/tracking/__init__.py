"""Deep SORT tracking support: the appearance embedder (ONNX Runtime or torch) and id-stability metrics."""
