"""Sample workloads and the load client.

``ambit.apps.sample`` is the built-in app a container with no ``command`` runs: an HTTP echo (with
the helloworld/httpbin/bookinfo paths answering usefully) and a TCP echo, one process serving all
of the container's ports. ``ambit.apps.load`` is an open-loop, fixed-rate HTTP/TCP load client
that records every request's outcome and latency. ``ambit.apps.grpc_echo`` is a gRPC echo server and
client (unary, bidi streaming, a NOT_FOUND call) for checking gRPC through a waypoint.

This package imports nothing from ambit but ``ambit.net.tasks``; the submodules are not imported
here, so ``python -m ambit.apps.sample`` starts without loading the load client (and vice versa).
"""
