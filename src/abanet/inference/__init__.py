"""Inference: backends (eager, channels_last, bf16, onnxruntime, compile), the Segmenter, predict."""
