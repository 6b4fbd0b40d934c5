from mosn.plugins import Extension, hookimpl


@hookimpl
def mosn_network_filters():
    return [Extension("tcp_proxy", lambda config, context: None)]
