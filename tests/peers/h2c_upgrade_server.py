"""HTTP/2 server for Moat's capture tests that accepts the HTTP/1.1 `Upgrade: h2c` dance (which
nghttpd does not): the upgrading request is answered as HTTP/2 stream 1; later requests on the
connection are ordinary HTTP/2 streams. Usage: h2c_upgrade_server.py ADDRESS PORT"""
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events


def respond(connection, stream_id, path):
    body = b"upgraded %s\n" % path
    connection.send_headers(stream_id, [(":status", "200"), ("content-length", str(len(body))),
                                        ("content-type", "text/plain")])
    connection.send_data(stream_id, body, end_stream=True)


def serve(client):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(65536)
        if not chunk:
            return
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    path = lines[0].split(" ")[1].encode()
    headers = dict(line.split(": ", 1) for line in lines[1:])
    settings = headers.get("HTTP2-Settings", headers.get("http2-settings", ""))
    client.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    connection.initiate_upgrade_connection(settings)
    respond(connection, 1, path)
    client.sendall(connection.data_to_send())
    data = rest
    while True:
        if data:
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    request = dict(event.headers)
                    respond(connection, event.stream_id, request[b":path"])
            client.sendall(connection.data_to_send())
        data = client.recv(65536)
        if not data:
            return


listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((sys.argv[1], int(sys.argv[2])))
listener.listen()
while True:
    client, _ = listener.accept()
    threading.Thread(target=serve, args=(client,), daemon=True).start()
