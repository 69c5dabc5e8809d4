"""A client that does many kinds of I/O besides one HTTP call, for the capture filter tests:
file writes and reads, a pipe, a unix socket pair and UDP, then one HTTP/1.1 GET over TCP.
Waits for a line on stdin before starting, so the test can set up filters on its pid first.
Usage: noisy_client.py HOST PORT SCRATCH_DIR"""
import os
import socket
import sys

host, port, scratch = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.stdin.readline()
with open(os.path.join(scratch, "noise.txt"), "wb") as file:
    file.write(b"GET /from-a-file HTTP/1.1\r\n\r\n" * 100)
with open(os.path.join(scratch, "noise.txt"), "rb") as file:
    file.read()
read_end, write_end = os.pipe()
os.write(write_end, b"GET /from-a-pipe HTTP/1.1\r\n\r\n")
os.read(read_end, 100)
left, right = socket.socketpair()
left.sendall(b"GET /from-a-unix-socket HTTP/1.1\r\n\r\n")
right.recv(100)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.sendto(b"GET /from-udp HTTP/1.1\r\n\r\n", ("127.0.0.1", 9))
tcp = socket.create_connection((host, port))
tcp.sendall(b"GET /over-tcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
while tcp.recv(65536):
    pass
print("done", flush=True)
