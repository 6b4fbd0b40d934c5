"""The multiplexed RPC engine (MOSN's X-protocol) and its frame-codec interface."""

from mosn.rpc.codec import Frame, FrameCodec, FrameError, FrameKind

__all__ = ["Frame", "FrameCodec", "FrameError", "FrameKind"]
