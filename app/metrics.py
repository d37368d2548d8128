"""Prometheus metrics of one app instance, in a registry of its own (tests build many apps)."""

from __future__ import annotations

from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_EXAMPLES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256)


class Metrics:
    """The service's instruments (each one's help text says what it counts), in ``registry``,
    which ``/metrics`` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        seconds = partial(Histogram, buckets=_SECONDS, registry=self.registry)
        examples = partial(Histogram, buckets=_EXAMPLES, registry=self.registry)
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        self.requests = seconds(
            "vggish_request_duration_seconds", "HTTP request duration", ["method", "route", "status"]
        )
        self.queue_time = seconds("vggish_queue_seconds", "Time examples waited for the model")
        self.decode_time = seconds("vggish_decode_seconds", "Decode + log-mel time per input")
        self.inference_time = seconds("vggish_inference_seconds", "Model time per batch")
        self.batch_examples = examples("vggish_batch_examples", "Examples per model batch")
        self.batch_requests = examples("vggish_batch_inputs", "Inputs merged into one model batch")
        self.queue_depth = gauge("vggish_queue_examples", "Examples waiting for the model")
        self.audio_seconds = counter("vggish_audio_seconds", "Seconds of audio embedded")
        self.examples = counter("vggish_examples", "Examples embedded")
        self.failures = counter("vggish_failures", "Failed requests by reason", ["reason"])
        self.heads_trained = counter(
            "vggish_heads_trained", "Classifier heads trained or imported", ["source"]
        )
        self.classifications = counter("vggish_classifications", "Inputs classified by a head")
        self.streams = gauge("vggish_streams", "Live streams open now")
        self.stream_waits = counter(
            "vggish_stream_backpressure", "Times a stream stopped reading: its backlog was full"
        )
        self.trainings_running = gauge("vggish_head_trainings_running", "Head trainings running now")
        self.training_steps = counter("vggish_head_training_steps", "Optimiser steps of head trainings")
