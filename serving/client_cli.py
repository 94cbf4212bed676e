"""``ftx client predict IMAGE... --server HOST:PORT --model NAME``: top-k labels from TF Serving or ftx serve.

Also ``ftx client status`` and ``ftx client metadata``. Images go as encoded
bytes through the ``serving_bytes`` signature, so the server decodes and
resizes them as training did. Exit 1 when the server refuses or cannot be
reached (one line saying which), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from serving.client import GRPC_PORT, REST_PORT, ClientError, ClientOptions, GrpcClient, RestClient, server_address

DEFAULT_SERVER = "127.0.0.1"  # its port is TF Serving's default for the protocol, without a note


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("predict", "classify", "status", "metadata"))
    parser.add_argument("images", nargs="*", help="image files (predict, classify)")
    parser.add_argument("--server", default=DEFAULT_SERVER,
                        help=f"HOST[:PORT]; without a port, TF Serving's defaults: {GRPC_PORT} gRPC, {REST_PORT} "
                             "REST (--rest)")
    parser.add_argument("--model", required=True, help="model name")
    parser.add_argument("--version", type=int, help="model version (default: the latest)")
    parser.add_argument("--label", help="version label, e.g. stable or canary")
    parser.add_argument("--rest", action="store_true", help="use the REST API instead of gRPC")
    parser.add_argument("--top-k", type=int, default=3, help="labels to print per image")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--batch-size", type=int, default=32, help="images per request")
    parser.add_argument("--tls", action="store_true", help="gRPC over TLS")
    parser.add_argument("--root-certificates", help="PEM file of trusted roots for --tls")


def run(args: argparse.Namespace) -> int:
    try:
        options = ClientOptions(args.model, args.version, args.label, timeout=args.timeout,
                                batch_size=args.batch_size, tls=args.tls, root_certificates=args.root_certificates)
        if args.action in ("predict", "classify") and not args.images:
            raise ValueError(f"{args.action} needs at least one image file")
        encoded = [Path(path).read_bytes() for path in args.images]
    except (ValueError, OSError) as error:
        print(f"ftx client: {error}", file=sys.stderr)
        return 2
    server, note = server_address(args.server, args.rest)
    if note and args.server != DEFAULT_SERVER:
        print(f"ftx client: {note}", file=sys.stderr)
    client = RestClient(server, options) if args.rest else GrpcClient(server, options)
    try:
        if args.action == "status":
            for version, state in client.status():
                print(f"version {version}: {state}")
        elif args.action == "metadata":
            print(json.dumps(client.metadata() if args.rest else client.signatures(), indent=2))
        elif args.action == "predict":
            prediction = client.predict_bytes(encoded)
            labels = [label for label, _ in client.classify(encoded[:1])[0]]  # every class, in model order
            for path, row in zip(args.images, prediction.probabilities):
                top = row.argsort()[::-1][:args.top_k]
                print(f"{path}: " + ", ".join(f"{labels[i]} {row[i]:.3f}" for i in top))
        else:
            for path, classes in zip(args.images, client.classify(encoded)):
                top = sorted(classes, key=lambda c: -c[1])[:args.top_k]
                print(f"{path}: " + ", ".join(f"{label} {score:.3f}" for label, score in top))
    except ClientError as error:
        said = error.message if error.kind in ("unreachable", "protocol") else \
            f"the server refused the request: {error}"
        print(f"ftx client: {said}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0

