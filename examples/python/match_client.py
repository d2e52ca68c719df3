#!/usr/bin/env python3
"""Calls lookalike's Matcher from Python, the way internal Python services do.

The client code is generated from proto/lookalike/v1/matcher.proto with grpcio-tools
(into a temporary directory, so nothing generated is committed):

    pip install grpcio grpcio-tools
    python3 examples/python/match_client.py --addr localhost:50051 photo.jpg [photo2.jpg ...]

Prints one JSON object per photo: the faces with their best candidates.
"""
import argparse
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def load_stubs():
    out = tempfile.mkdtemp(prefix="lookalike-py-")
    proto_dir = os.path.join(ROOT, "proto")
    rc = protoc.main([
        "protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
        os.path.join(proto_dir, "lookalike", "v1", "matcher.proto"),
    ])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out)
    from lookalike.v1 import matcher_pb2, matcher_pb2_grpc  # noqa: E402  (generated above)
    return matcher_pb2, matcher_pb2_grpc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", default="localhost:50051")
    ap.add_argument("--top-k", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=10.0, help="deadline per call, seconds")
    ap.add_argument("photos", nargs="+")
    args = ap.parse_args()
    pb, pb_grpc = load_stubs()
    status = 0
    with grpc.insecure_channel(args.addr, options=[("grpc.max_send_message_length", 32 << 20)]) as channel:
        stub = pb_grpc.MatcherStub(channel)
        info = stub.GetGalleryInfo(pb.GetGalleryInfoRequest(), timeout=args.timeout)
        print(json.dumps({"gallery": info.version, "identities": info.identities}), flush=True)
        for path in args.photos:
            with open(path, "rb") as f:
                request = pb.MatchRequest(image=f.read(), top_k=args.top_k)
            try:
                reply = stub.Match(request, timeout=args.timeout)
            except grpc.RpcError as e:
                print(json.dumps({"photo": path, "code": e.code().name, "error": e.details()}), flush=True)
                status = 1
                continue
            faces = [{
                "box": [fm.face.box.left, fm.face.box.top, fm.face.box.right, fm.face.box.bottom],
                "candidates": [{"name": c.name, "alias": c.alias, "distance": round(c.distance, 4),
                                "similarity": round(c.similarity_percent, 1)} for c in fm.candidates],
            } for fm in reply.faces]
            print(json.dumps({"photo": path, "faces": faces}), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
