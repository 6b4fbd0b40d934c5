"""A small Dubbo-Thrift server for the interop tests, written from the wire format
apart from the codec under test: it answers every ``CALL`` with a ``REPLY`` whose
result (field 0) is the call's field 1, echoing the Dubbo request id and the seqid;
it counts the calls it served."""

from __future__ import annotations

import socket
import struct
import threading

READ = 65536


class EchoBackend:
    def __init__(self) -> None:
        self.calls = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while chunk := conn.recv(READ):
                buffer += chunk
                while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack(">I", buffer[:4])[0]:
                    size = struct.unpack(">I", buffer[:4])[0]
                    frame, buffer = buffer[4:4 + size], buffer[4 + size:]
                    conn.sendall(self._answer(frame))
        except OSError:
            pass

    def _answer(self, frame: bytes) -> bytes:
        header_size = struct.unpack(">H", frame[6:8])[0]
        header = frame[:header_size]          # magic .. request id, kept as it is
        message = frame[header_size:]
        name_len = struct.unpack(">i", message[4:8])[0]
        name = message[8:8 + name_len]
        seqid = message[8 + name_len:12 + name_len]
        args = message[12 + name_len:]
        assert args[:3] == b"\x0b\x00\x01", "the echo call's field 1 is a string"
        value_len = struct.unpack(">i", args[3:7])[0]
        value = args[7:7 + value_len]
        self.calls += 1
        reply = (b"\x80\x01\x00\x02" + struct.pack(">i", name_len) + name + seqid
                 + b"\x0b\x00\x00" + struct.pack(">i", len(value)) + value + b"\x00")
        body = bytearray(header + reply)
        struct.pack_into(">I", body, 2, len(body))   # message size
        return struct.pack(">I", len(body)) + bytes(body)

    def close(self) -> None:
        self._listener.close()
        for conn in self._conns:
            conn.close()
