"""gRPC peer for Moat's capture tests, without generated code: methods take and return raw bytes.

  grpc_peer.py serve ADDRESS:PORT
  grpc_peer.py call ADDRESS:PORT    (makes the calls listed in CALLS, prints one line each)
"""
import sys
from concurrent import futures

import grpc

SERVICE = "moat.test.Echo"


def unary(request, context):
    if request == b"fail":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    return request[::-1]


def server_stream(request, context):
    for index in range(int(request or b"3")):
        yield b"item %d" % index


def client_stream(requests, context):
    return b"%d" % sum(1 for _ in requests)


def bidi(requests, context):
    for request in requests:
        yield request.upper()


def serve(address):
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(address)
    server.start()
    print("serving", flush=True)
    server.wait_for_termination()


def call(address):
    with grpc.insecure_channel(address) as channel:
        method = lambda kind, name: getattr(channel, kind)("/%s/%s" % (SERVICE, name))
        print("Unary", method("unary_unary", "Unary")(b"hello", timeout=5))
        try:
            method("unary_unary", "Unary")(b"fail", timeout=5)
        except grpc.RpcError as error:
            print("Unary failed", error.code())
        print("ServerStream", list(method("unary_stream", "ServerStream")(b"4", timeout=5)))
        print("ClientStream", method("stream_unary", "ClientStream")(iter([b"a", b"b", b"c"]), timeout=5))
        print("Bidi", list(method("stream_stream", "Bidi")(iter([b"x", b"y"]), timeout=5)))


if __name__ == "__main__":
    {"serve": serve, "call": call}[sys.argv[1]](sys.argv[2])
