from mosn.plugins import Extension, hookimpl
from mosn_minirpc.codec import FaultyMiniRpcCodec, MiniRpcCodec


@hookimpl
def mosn_xprotocol_codecs():
    return [Extension("minirpc", lambda config: MiniRpcCodec())]


@hookimpl
def mosn_protocols():
    from mosn.rpc.engine import rpc_protocol

    return [Extension("minirpc", lambda config: rpc_protocol(MiniRpcCodec())),
            Extension("faultyrpc", lambda config: rpc_protocol(FaultyMiniRpcCodec()))]
