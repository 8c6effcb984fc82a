"""Training on an avaforge dataset with mmaction2: config generation, train/evaluate, demo video."""
