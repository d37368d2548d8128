"""The model's input: 16 kHz samples -> log-mel spectrogram (64 bands, 10 ms frames) -> 96-frame
examples with their timestamps, in NumPy (:mod:`.logmel`, the reference path) or batched in
PyTorch on any device (:mod:`.logmel_torch`, the same numbers).
"""
