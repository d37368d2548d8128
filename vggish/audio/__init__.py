"""Audio in: any common file or array decoded to float64 samples, mixed to mono
(:mod:`.decode`), then resampled to 16 kHz with the reference's filter or soxr (:mod:`.resample`).
"""
