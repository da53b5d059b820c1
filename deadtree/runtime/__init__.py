"""ONNX Runtime side: model metadata, the shipped-model registry, sessions and providers."""
