"""Inference: backends (eager, channels_last, bf16, onnxruntime...), the Segmenter, predict."""
