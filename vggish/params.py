"""The reference's numbers, named once, with units (docs/vggish.md states them): everything else in
the package derives its sizes from these; nothing retypes them."""

from __future__ import annotations

# --- Input (docs/vggish.md §1) -------------------------------------------------------------------
SAMPLE_RATE = 16_000  # Hz: every waveform is resampled to this rate before the front end.
INT16_SCALE = 32_768.0  # 16-bit samples are divided by this (not 32767), as the reference does.

# --- Log-mel front end (docs/vggish.md §2) -----------------------------------------------------------
STFT_WINDOW_SECONDS = 0.025  # 400 samples at 16 kHz
STFT_HOP_SECONDS = 0.010  # 160 samples at 16 kHz
STFT_WINDOW_SAMPLES = round(SAMPLE_RATE * STFT_WINDOW_SECONDS)  # 400
STFT_HOP_SAMPLES = round(SAMPLE_RATE * STFT_HOP_SECONDS)  # 160
FFT_LENGTH = 1 << (STFT_WINDOW_SAMPLES - 1).bit_length()  # 512: next power of two >= window
NUM_SPECTRUM_BINS = FFT_LENGTH // 2 + 1  # 257
NUM_MEL_BINS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
MEL_BREAK_FREQUENCY_HERTZ = 700.0  # HTK mel scale: mel(f) = 1127 ln(1 + f / 700)
MEL_HIGH_FREQUENCY_Q = 1127.0
LOG_OFFSET = 0.01  # log(mel + 0.01); silence gives log(0.01)

# --- Examples (docs/vggish.md §3) ------------------------------------------------------------------
EXAMPLE_WINDOW_SECONDS = 0.96  # 96 frames of 10 ms
EXAMPLE_HOP_SECONDS = 0.96  # the reference hop; any multiple of 0.01 s is accepted
NUM_FRAMES = round(EXAMPLE_WINDOW_SECONDS / STFT_HOP_SECONDS)  # 96
NUM_BANDS = NUM_MEL_BINS  # 64
# Samples at 16 kHz that one example covers: 95 hops plus one window = 15600 (0.975 s).
EXAMPLE_SPAN_SAMPLES = (NUM_FRAMES - 1) * STFT_HOP_SAMPLES + STFT_WINDOW_SAMPLES
EXAMPLE_SPAN_SECONDS = EXAMPLE_SPAN_SAMPLES / SAMPLE_RATE  # 0.975

# --- Network (docs/vggish.md §4) -------------------------------------------------------------------
EMBEDDING_SIZE = 128

# --- Postprocessing (docs/vggish.md §5) -------------------------------------------------------------
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = +2.0
PCA_EIGEN_VECTORS_NAME = "pca_eigen_vectors"  # key in Google's vggish_pca_params.npz
PCA_MEANS_NAME = "pca_means"
