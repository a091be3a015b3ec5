"""The SMS gateway adapter's request: the form body as ``urlencode`` writes it, in one write."""

from __future__ import annotations

import http.client
import random
import socket
import threading
from urllib.parse import quote_plus, urlencode

from service.adapters.sms import _Connection, form_value


def test_form_value_is_urlencode_quote_plus() -> None:
    characters = [chr(n) for n in range(0xD800)] + ["\uffff", "😀", "\U0010ffff"]
    for character in characters:
        assert form_value(character) == quote_plus(character, safe="")
    rng = random.Random(14)
    for _ in range(2000):
        text = "".join(rng.choice(characters) for _ in range(rng.randint(0, 30)))
        assert (f"To={form_value(text)}&From={form_value('+16025550000')}"
                f"&Body={form_value(text[::-1])}") == urlencode(
            {"To": text, "From": "+16025550000", "Body": text[::-1]})


def _received(connection_class: type[http.client.HTTPConnection]) -> tuple[bytes, int]:
    """What the server read for one POST (the Host header's port left out), and in how many
    reads."""
    body = b"To=%2B1602&Body=w%C3%B6rld"
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    got: list[tuple[bytes, int]] = []

    def serve() -> None:
        client, _ = server.accept()
        with client:
            data, reads = b"", 0
            while not data.endswith(body):
                data += client.recv(65536)
                reads += 1
            got.append((data, reads))
            client.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    connection = connection_class("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", "/Messages.json?x=1", body=body,
                           headers={"Idempotency-Key": "key", "Authorization": "Basic x"})
        response = connection.getresponse()
        assert (response.status, response.read()) == (201, b"ok")
    finally:
        connection.close()
        thread.join(5)
        server.close()
    data, reads = got[0]
    return data.replace(f":{port}".encode(), b":PORT"), reads


def test_the_request_leaves_in_one_write_with_the_same_bytes() -> None:
    ours, _ = _received(_Connection)
    theirs, _ = _received(http.client.HTTPConnection)
    assert ours == theirs
    assert ours.startswith(b"POST /Messages.json?x=1 HTTP/1.1\r\n")
    writes: list[bytes] = []

    class Socket:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def sendall(self, data: bytes) -> None:
            writes.append(bytes(data))
            self.sock.sendall(data)

        def __getattr__(self, name: str) -> object:
            return getattr(self.sock, name)

    class Counted(_Connection):
        def connect(self) -> None:
            super().connect()
            self.sock = Socket(self.sock)

    counted, _ = _received(Counted)
    assert counted == ours and len(writes) == 1


def test_a_request_that_cannot_be_built_writes_nothing() -> None:
    connection = _Connection("127.0.0.1", 9, timeout=1)  # never connected
    try:
        connection.request("POST", "/", body=b"x", headers={"Bad\nName": "v"})
    except ValueError:
        pass
    else:
        raise AssertionError("an invalid header name was accepted")
    assert connection.sock is None  # nothing was sent (sending would have connected)
