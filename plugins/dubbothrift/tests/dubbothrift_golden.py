"""Golden Dubbo-Thrift frames, written byte by byte from the wire format (Dubbo's
``ThriftCodec``: the Dubbo header, then a Thrift strict binary-protocol message), not
by the codec under test. Service ``com.example.Demo$Iface``, method ``echo``, seqid 1,
Dubbo request id 7."""

from __future__ import annotations

SERVICE = "com.example.Demo$Iface"
METHOD = "echo"
REQUEST_ID = 7

_HEADER = (
    "dabc"                                  # magic
    "{size}"                                # message size (u32), = the frame size
    "002b"                                  # header size: 9 + 4 + 22 + 8 = 43
    "01"                                    # version
    "00000016" + SERVICE.encode().hex() +   # service name (Thrift string, 22 bytes)
    "0000000000000007"                      # request id (i64)
)


def _frame(size: int, message: str) -> bytes:
    header = _HEADER.format(size=f"{size:08x}")
    return bytes.fromhex(f"{size:08x}" + header + message)


CALL = _frame(69, (
    "80010001" "00000004" + METHOD.encode().hex() + "00000001"   # CALL echo, seqid 1
    "0b0001" "00000002" "6869"                                   # field 1: string "hi"
    "00"))                                                       # stop
REPLY = _frame(69, (
    "80010002" "00000004" + METHOD.encode().hex() + "00000001"   # REPLY echo, seqid 1
    "0b0000" "00000002" "6869"                                   # field 0 (success): "hi"
    "00"))
EXCEPTION = _frame(79, (
    "80010003" "00000004" + METHOD.encode().hex() + "00000001"   # EXCEPTION echo, seqid 1
    "0b0001" "00000005" + b"boom!".hex() +                       # 1 message
    "080002" "00000006"                                          # 2 type INTERNAL_ERROR
    "00"))
ONEWAY = _frame(69, (
    "80010004" "00000004" + METHOD.encode().hex() + "00000001"
    "0b0001" "00000002" "6869" "00"))

ALL = {"call": CALL, "reply": REPLY, "exception": EXCEPTION, "oneway": ONEWAY}
