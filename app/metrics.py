"""Prometheus metrics of one app instance, in a registry of its own (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_EXAMPLES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256)


class Metrics:
    """The service's instruments (each one's help text says what it counts), in ``registry``,
    which ``/metrics`` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Histogram(
            "vggish_request_duration_seconds",
            "HTTP request duration",
            ["method", "route", "status"],
            buckets=_SECONDS,
            registry=r,
        )
        self.queue_time = Histogram(
            "vggish_queue_seconds", "Time examples waited for the model", buckets=_SECONDS, registry=r
        )
        self.decode_time = Histogram(
            "vggish_decode_seconds", "Decode + log-mel time per input", buckets=_SECONDS, registry=r
        )
        self.inference_time = Histogram(
            "vggish_inference_seconds", "Model time per batch", buckets=_SECONDS, registry=r
        )
        self.batch_examples = Histogram(
            "vggish_batch_examples", "Examples per model batch", buckets=_EXAMPLES, registry=r
        )
        self.batch_requests = Histogram(
            "vggish_batch_inputs", "Inputs merged into one model batch", buckets=_EXAMPLES, registry=r
        )
        self.queue_depth = Gauge("vggish_queue_examples", "Examples waiting for the model", registry=r)
        self.audio_seconds = Counter("vggish_audio_seconds", "Seconds of audio embedded", registry=r)
        self.examples = Counter("vggish_examples", "Examples embedded", registry=r)
        self.failures = Counter("vggish_failures", "Failed requests by reason", ["reason"], registry=r)
        self.heads_trained = Counter(
            "vggish_heads_trained", "Classifier heads trained or imported", ["source"], registry=r
        )
        self.classifications = Counter("vggish_classifications", "Inputs classified by a head", registry=r)
        self.streams = Gauge("vggish_streams", "Live streams open now", registry=r)
        self.stream_waits = Counter(
            "vggish_stream_backpressure", "Times a stream stopped reading: its backlog was full", registry=r
        )
        self.trainings_running = Gauge(
            "vggish_head_trainings_running", "Head trainings running now", registry=r
        )
        self.training_steps = Counter(
            "vggish_head_training_steps", "Optimiser steps of head trainings", registry=r
        )
