#!/usr/bin/env python3
"""Decodes encoded Recur Envelopes (proto/recur.proto) and prints one JSON line per file.

usage: scripts/decode-wire.py FILE [FILE ...] [--max-values N]

Each FILE holds the bytes of one ZeroMQ message body (one Envelope). The line gives the message
type, protocol version, byte count and every body field; tensors are listed with name, shape
and byte count, plus their float32 values when they have at most N elements (default 64).
Tensor data is never trusted: a byte count that does not match the shape is reported as such.

Needs the python protobuf package (Debian: python3-protobuf, which serves /usr/bin/python3, not
a pyenv python) and a protobuf compiler (grpc_tools.protoc if importable, else protoc; Debian:
protobuf-compiler). The schema is compiled from proto/recur.proto at every run, so this script
cannot drift from it.
"""
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO = os.path.join(REPOSITORY, "proto", "recur.proto")


def fail(message, code=1):
    print(f"decode-wire: {message}", file=sys.stderr)
    sys.exit(code)


try:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf.message import DecodeError
except ImportError:
    fail(f"the python protobuf package is not importable by {sys.executable}; "
         "install python3-protobuf and run with /usr/bin/python3 (or pip install protobuf)", 2)


def compile_schema(proto):
    """Returns the serialized FileDescriptorSet of `proto`."""
    with tempfile.TemporaryDirectory() as directory:
        output = os.path.join(directory, "recur.desc")
        arguments = [f"--proto_path={os.path.dirname(proto)}", f"--descriptor_set_out={output}",
                     os.path.basename(proto)]
        try:
            from grpc_tools import protoc as grpc_protoc
            status = grpc_protoc.main(["protoc"] + arguments)
        except ImportError:
            protoc = shutil.which("protoc")
            if protoc is None:
                fail("no protobuf compiler: install protobuf-compiler (protoc) or grpcio-tools", 2)
            status = subprocess.run([protoc] + arguments).returncode
        if status != 0:
            fail(f"protoc failed on {proto} (exit {status})", 2)
        with open(output, "rb") as file:
            return file.read()


def envelope_class():
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(compile_schema(PROTO))
    pool = descriptor_pool.DescriptorPool()
    for file in descriptors.file:
        pool.Add(file)
    descriptor = pool.FindMessageTypeByName("recur.Envelope")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def json_float(value):
    """JSON has no NaN or infinities: those become strings."""
    return value if math.isfinite(value) else str(value)


def summarize_tensor(tensor, max_values):
    shape = list(tensor.shape)
    count = math.prod(shape)
    summary = {"name": tensor.name, "shape": shape, "bytes": len(tensor.data)}
    if len(tensor.data) != 4 * count:
        summary["error"] = f"shape needs {4 * count} bytes, got {len(tensor.data)}"
    elif count <= max_values:
        summary["values"] = [json_float(v) for v in struct.unpack(f"<{count}f", tensor.data)]
    return summary


def summarize_body(body, max_values):
    fields = {}
    for field in body.DESCRIPTOR.fields:
        value = getattr(body, field.name)
        if field.message_type is not None and field.message_type.full_name == "recur.Tensor":
            fields[field.name] = [summarize_tensor(t, max_values) for t in value]
        elif isinstance(value, float):
            fields[field.name] = json_float(value)
        else:
            fields[field.name] = value
    return fields


def decode(path, envelope_type, max_values):
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        fail(f"{path}: {error.strerror}")
    envelope = envelope_type()
    try:
        envelope.ParseFromString(data)
    except DecodeError as error:
        fail(f"{path}: truncated or malformed Envelope ({len(data)} bytes): {error}")
    kind = envelope.WhichOneof("body")
    if kind is None:
        fail(f"{path}: Envelope has no body (missing or unknown message type, {len(data)} bytes)")
    return {"file": path, "bytes": len(data), "version": envelope.version, "type": kind,
            "body": summarize_body(getattr(envelope, kind), max_values)}


def main():
    parser = argparse.ArgumentParser(description="Print encoded Recur Envelopes as JSON lines.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="one encoded Envelope per file")
    parser.add_argument("--max-values", type=int, default=64,
                        help="print the values of tensors with at most this many elements")
    arguments = parser.parse_args()
    envelope_type = envelope_class()
    for path in arguments.files:
        print(json.dumps(decode(path, envelope_type, arguments.max_values)))


if __name__ == "__main__":
    main()
