#!/usr/bin/env python3
"""A real OTLP receiver for the tests: decodes what it receives with the official generated
messages of the PyPI package `opentelemetry-proto` and appends one JSON line per export to a file.

    receiver.py --out FILE            OTLP/HTTP on 127.0.0.1 (POST /v1/metrics, /v1/traces, or
                                      either under a prefix such as Langfuse's /api/public/otel;
                                      protobuf, or JSON with content-type application/json)
    receiver.py --out FILE --grpc     OTLP/gRPC MetricsService/Export and TraceService/Export

The first line on stdout is `PORT <n>` (it binds port 0). Each line of FILE:
{"transport": "http"|"grpc", "signal": "metrics"|"traces", "path": ..., "content_type": ...,
 "headers": {lower-case name: value}, "body": <the request as protobuf's JSON mapping, field
 names as in the .proto>}.
It answers HTTP 415 to any other content type and 404 to any other path, as a collector does.
Stopped by SIGTERM/SIGINT.
"""

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

LOCK = threading.Lock()

SIGNALS = {
    "/v1/metrics": (
        "metrics",
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
    "/v1/traces": (
        "traces",
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
}


def write(out, entry):
    with LOCK:
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")


def to_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def http_server(out):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body=b"", content_type="application/x-protobuf"):
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def do_POST(self):
            data = self.body()
            path = self.path.split("?", 1)[0]
            # A collector's /v1/traces, or the same under a prefix (Langfuse's
            # /api/public/otel/v1/traces).
            signal = next((SIGNALS[s] for s in SIGNALS if path.endswith(s)), None)
            if signal is None:
                return self.answer(404, b"", "text/plain")
            signal_name, request_type, response_type = signal
            content_type = (self.headers.get("content-type") or "").split(";")[0].strip()
            request = request_type()
            try:
                if content_type == "application/x-protobuf":
                    request.ParseFromString(data)
                elif content_type == "application/json":
                    json_format.Parse(data, request)
                else:
                    return self.answer(415, b"", "text/plain")
            except Exception as e:  # a body the official messages refuse
                return self.answer(400, str(e).encode(), "text/plain")
            write(
                out,
                {
                    "transport": "http",
                    "signal": signal_name,
                    "path": path,
                    "content_type": content_type,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": to_dict(request),
                },
            )
            self.answer(200, response_type().SerializeToString())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server, server.server_address[1]


def grpc_server(out):
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    def entry(signal_name, request, context):
        write(
            out,
            {
                "transport": "grpc",
                "signal": signal_name,
                "path": "",
                "content_type": "application/grpc",
                "headers": {k.lower(): v for k, v in context.invocation_metadata()},
                "body": to_dict(request),
            },
        )

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request, context):
            entry("metrics", request, context)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            entry("traces", request, context)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    return server, port


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--grpc", action="store_true")
    args = parser.parse_args()
    open(args.out, "a").close()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.grpc:
        server, port = grpc_server(args.out)
        server.start()
        print(f"PORT {port}", flush=True)
        stop.wait()
        server.stop(0)
    else:
        server, port = http_server(args.out)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        print(f"PORT {port}", flush=True)
        stop.wait()
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
