"""Prometheus metrics, in a registry per app so that several apps (tests) never collide."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)  # seconds


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "qasr_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.stage_seconds = Histogram(
            "qasr_stage_seconds",
            "Latency per stage (decode, features, inference, ctc, total)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter("qasr_audio_seconds", "Audio transcribed, seconds", registry=r)
        self.real_time_factor = Histogram(
            "qasr_real_time_factor",
            "Processing seconds per audio second",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2),
            registry=r,
        )
        self.queue_depth = Gauge("qasr_queue_windows", "Audio windows waiting for inference", registry=r)
        self.batch_size = Histogram(
            "qasr_batch_size", "Windows per inference batch", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=r
        )
        self.ready = Gauge("qasr_ready", "1 when the model is loaded and serving", registry=r)
        self.quantize_seconds = Gauge("qasr_quantize_seconds", "Startup quantization time (0: from cache)", registry=r)
        self.model_info = Gauge("qasr_quantization", "Quantization report summary", ["field"], registry=r)
        self.search_workers = Gauge("qasr_search_workers", "Lexicon search worker processes (0: greedy)", registry=r)
        self.search_workers_busy = Gauge("qasr_search_workers_busy", "Lexicon search workers searching now", registry=r)
        self.live_streams = Gauge("qasr_live_streams", "Live streams (/v1/listen) open now", registry=r)
        self.live_final_lag = Histogram(
            "qasr_live_final_lag_seconds",
            "Live streams: audio received when a final result was sent, past that result's end",
            buckets=(0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 30),
            registry=r,
        )

    def track_search_workers(self, count: int, busy: Callable[[], float]) -> None:
        """The search workers' count, and `busy()` read at every scrape."""
        self.search_workers.set(count)
        self.search_workers_busy.set_function(busy)

    def record_report(self, report: dict, quantize_seconds: float) -> None:
        self.quantize_seconds.set(quantize_seconds)
        size = report.get("size", {})
        for name, value in (
            ("argmax_agreement", report.get("argmax_agreement")),
            ("parameters", report.get("parameters")),
            ("compression", size.get("compression")),
            ("quantized_bytes", size.get("quantized_bytes")),
            ("bn_loss_final", report.get("synthetic", {}).get("final_loss")),
        ):
            if isinstance(value, int | float):
                self.model_info.labels(field=name).set(value)
