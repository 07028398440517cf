"""A loopback port nobody listens on yet, for a server started next (tests, demo, benchmarks).

Another process may still bind it first: callers that start a server on it retry on
"address already in use"."""
import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
