"""Packaged YAML configurations: ``default.yaml`` (every training key) and experiment presets."""
