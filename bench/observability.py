"""The cost of tracing on W1 and W2: the same workloads with the OTLP exporter off and
on, alternating per repetition so both see the same machine.

    .venv/bin/python -m bench.observability                 # 3 repetitions each
    .venv/bin/python -m bench.observability --reps 5 --w1 5000 --w2 200

"On" sets ``OTEL_EXPORTER_OTLP_ENDPOINT`` for the server and the worker (so its
task processes) to a local OTLP/HTTP sink in this process that counts the
spans and drops them, with every trace sampled: the task processes export each
attempt's span and the server each finished run's. "Off" is the default
(nothing configured). Metrics cost nothing until scraped (the server's history
walk and gauges run on ``GET /metrics``); what they always do (HTTP request
counting, statement timing) is in both columns. Needs what ``python -m bench``
needs (PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.suite import Results, Sizes, tf_measure

SYSTEM = "triggerfish-pg"


class _Sink:
    """An OTLP/HTTP endpoint that counts export requests and bytes."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(size)
                sink.requests += 1
                sink.bytes += size
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--w1", type=int, default=5000)
    parser.add_argument("--w2", type=int, default=200)
    args = parser.parse_args(argv)
    sizes = Sizes(w1=args.w1, w2=args.w2)
    sink = _Sink()
    on = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    results = {"off": Results(), "on": Results()}
    for rep in range(args.reps):
        for mode in ("off", "on"):
            for key in on:
                os.environ.pop(key, None)
            if mode == "on":
                os.environ.update(on)
            for workload in ("W1", "W2"):
                print(f"{workload} tracing {mode} rep {rep + 1}/{args.reps} ...", flush=True)
                tf_measure(workload, SYSTEM, sizes, results[mode])
    for key in on:
        os.environ.pop(key, None)
    rows = [("W1", "one by one", "runs/s"), ("W2", "trigger->start p50", "ms")]
    rows.append(("W2", "trigger->start p95", "ms"))
    print(f"\n{'figure':32} {'off (median)':>14} {'on (median)':>14} {'change':>8}")
    for workload, name, unit in rows:
        off = results["off"].get(workload, name, SYSTEM)
        with_tracing = results["on"].get(workload, name, SYSTEM)
        if off is None or with_tracing is None:
            continue
        a, b = statistics.median(off.values), statistics.median(with_tracing.values)
        change = (b - a) / a * 100 if a else 0.0
        label = f"{workload} {name} ({unit})"
        print(f"{label:32} {a:14.2f} {b:14.2f} {change:+7.1f}%")
        print(f"{'':32} {off.values!s:>14} {with_tracing.values!s:>14}")
    print(f"\nspans exported: {sink.requests} OTLP requests, {sink.bytes} bytes")


if __name__ == "__main__":
    main()
