"""Training side: datasets, augmentation, losses, trainers and ONNX export (needs the `train` extra)."""
