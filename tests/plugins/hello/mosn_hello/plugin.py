"""A network filter that writes a greeting to each new connection and closes it."""

from pydantic import BaseModel

from mosn.network import FilterStatus, ReadFilter
from mosn.plugins import Extension, hookimpl


class HelloConfig(BaseModel):
    greeting: str = "hello"


class Hello(ReadFilter):
    def __init__(self, conn, greeting: bytes) -> None:
        self.conn = conn
        self.greeting = greeting

    def on_new_connection(self) -> FilterStatus:
        self.conn.write(self.greeting)
        self.conn.close()
        return FilterStatus.STOP


def build(config: HelloConfig, context):
    greeting = config.greeting.encode() + b"\n"
    return lambda conn: conn.add_read_filter(Hello(conn, greeting))


@hookimpl
def mosn_network_filters():
    return [Extension("hello", build, HelloConfig)]
