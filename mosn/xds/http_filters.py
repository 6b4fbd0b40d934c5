"""An ``http_connection_manager``'s ``http_filters`` into mosn's stream filters, and
``typed_per_filter_config`` (virtual hosts, routes) into mosn's ``per_filter_config``.

Envoy's fault filter becomes mosn's ``fault`` (read field by field: mosn's shape is
MOSN's); RBAC and the local rate limit become ``rbac`` and ``local_ratelimit``, whose
configs are Envoy's own shape: the message as data, checked here by the filter's
model so that a refusal names the Envoy field. Envoy keys a per-route config by the
HTTP filter's name; mosn keys it by the filter's type, which the config's type names
(a listener runs one filter of each type).
"""

from __future__ import annotations

from typing import Any, Callable

from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from pydantic import BaseModel, ValidationError

from mosn.config.base import Model
from mosn.config.document import join_path
from mosn.filters.ratelimit import LocalRateLimitConfig
from mosn.filters.rbac import RbacConfig, RbacPerRoute
from mosn.xds.fields import Fields
from mosn.xds.matchers import header_matcher, whole_percent

ROUTER = "envoy.extensions.filters.http.router.v3.Router"
FAULT = "envoy.extensions.filters.http.fault.v3.HTTPFault"
RBAC = "envoy.extensions.filters.http.rbac.v3.RBAC"
RBAC_PER_ROUTE = "envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
LOCAL_RATELIMIT = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
HTTP_FILTERS: dict[str, type[Message]] = {
    FAULT: fault_pb2.HTTPFault, RBAC: rbac_pb2.RBAC,
    LOCAL_RATELIMIT: local_rate_limit_pb2.LocalRateLimit, ROUTER: router_pb2.Router}
PER_ROUTE_CONFIGS: dict[str, type[Message]] = {
    FAULT: fault_pb2.HTTPFault, RBAC_PER_ROUTE: rbac_pb2.RBACPerRoute,
    LOCAL_RATELIMIT: local_rate_limit_pb2.LocalRateLimit}
FAULT_RUNTIME_KEYS = (
    "delay_percent_runtime", "abort_percent_runtime", "delay_duration_runtime",
    "abort_http_status_runtime", "max_active_faults_runtime",
    "response_rate_limit_percent_runtime", "abort_grpc_status_runtime")
"""Runtime keys overriding the fault's values: mosn has no runtime layer, so a key
never has a value and the config's own holds (as in an Envoy whose runtime does not
set the key). Istio sets none of them."""
UNSUPPORTED = "not supported by mosn yet"
"""What mosn's models say of a field whose feature mosn does not run."""
DISABLED = {"default_value": {"numerator": 0}}
"""Envoy's local rate limit checks and enforces 0% of requests when ``filter_enabled``
or ``filter_enforced`` is unset (mosn's own default is 100%)."""


def http_filters(f: Fields) -> list[dict[str, Any]]:
    """A connection manager's HTTP filters before the router (which must be last) as
    mosn's stream filters, in order."""
    filters = f.children("http_filters")
    if not filters:
        f.error("an http_connection_manager needs the router http filter", "http_filters")
    out: list[dict[str, Any]] = []
    for i, hf in enumerate(filters):
        hf.accept("name", "is_optional")  # a filter mosn takes is never skipped
        if hf.scalar("disabled"):
            hf.error("mosn runs every http filter on every route (enabling one per route "
                     "is not supported)", "disabled")
        type_name = (hf.message.typed_config.type_url.rpartition("/")[2]
                     if hf.has("typed_config") else "")
        config = hf.typed("typed_config", HTTP_FILTERS)
        last = i == len(filters) - 1
        if config is None:
            if not type_name:
                hf.error("an http filter needs its typed_config")
            continue
        if type_name == ROUTER:
            if not last:
                hf.error("the router is the last http filter")
            continue
        if last:
            hf.error("the last http filter is the router")
        kind, translate_config = STREAM_FILTERS[type_name]
        if any(flt["type"] == kind for flt in out):
            hf.error(f"mosn runs one {kind} filter in a connection manager (its per-route "
                     "configs are keyed by its type)")
        out.append({"type": kind, "config": translate_config(config)})
    return out


def per_filter_configs(f: Fields) -> dict[str, Any]:
    """A virtual host's or route's ``typed_per_filter_config`` as mosn's
    ``per_filter_config``, keyed by the type of filter each config is for."""
    out: dict[str, Any] = {}
    for key, (type_name, config) in f.typed_map("typed_per_filter_config",
                                                PER_ROUTE_CONFIGS).items():
        kind, translate_config = PER_ROUTE[type_name]
        if kind in out:
            f.error(f"a second {kind} config (mosn keys per-route configs by the filter's "
                    "type)", f"typed_per_filter_config[{key!r}]")
        out[kind] = translate_config(config)
    return out


# -- fault ---------------------------------------------------------------------------------


def fault(f: Fields) -> dict[str, Any]:
    f.accept(*FAULT_RUNTIME_KEYS)
    f.accept("disable_downstream_cluster_stats")  # stats mosn does not keep
    out: dict[str, Any] = {}
    delay = f.child("delay")
    if delay is not None:
        out["delay"] = fault_delay(delay)
    abort = f.child("abort")
    if abort is not None:
        out["abort"] = fault_abort(abort)
    if f.scalar("upstream_cluster"):
        out["upstream_cluster"] = f.scalar("upstream_cluster")
    headers = [header_matcher(h) for h in f.children("headers")]
    if headers:
        out["headers"] = headers
    if f.has("downstream_nodes"):
        f.refuse("downstream_nodes", "mosn does not read x-envoy-downstream-service-node")
    if f.has("max_active_faults"):
        f.refuse("max_active_faults", "mosn does not limit the faults active at once")
    if f.has("response_rate_limit"):
        f.refuse("response_rate_limit", "mosn's fault filter does not slow responses")
    if f.has("filter_metadata"):
        f.refuse("filter_metadata", "mosn's fault filter sets no dynamic metadata")
    return out


def fault_delay(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # sic: the proto's spelling of the oneof
    if the_one(f, "fault_delay_secifier", "fixed_delay", "fault delay"):
        out["fixed_delay"] = f"{f.seconds('fixed_delay')}s"
    out["percentage"] = fault_percent(f)
    return out


def fault_abort(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if the_one(f, "error_type", "http_status", "fault abort"):
        out["status"] = f.scalar("http_status")
    out["percentage"] = fault_percent(f)
    return out


def the_one(f: Fields, oneof: str, wanted: str, what: str) -> bool:
    """Whether ``oneof`` holds ``wanted``, the one member mosn takes; else an error."""
    kind = f.which(oneof)
    if kind is None:
        f.error(f"a {what} needs {wanted}")
    elif kind != wanted:
        f.refuse(kind, f"mosn's {what} takes {wanted} only")
    return kind == wanted


def fault_percent(f: Fields) -> int:
    """Envoy injects a fault in ``percentage`` of requests: 0% when unset."""
    percentage = f.child("percentage")
    if percentage is None:
        return 0
    return whole_percent(percentage, "mosn's fault filter takes a whole percent")


# -- configs in Envoy's own shape ----------------------------------------------------------


def rbac(f: Fields) -> dict[str, Any]:
    return checked(f, RbacConfig, proto_data(f))


def rbac_per_route(f: Fields) -> dict[str, Any]:
    return checked(f, RbacPerRoute, proto_data(f))


def local_ratelimit(f: Fields) -> dict[str, Any]:
    data = proto_data(f)
    data.setdefault("filter_enabled", DISABLED)
    data.setdefault("filter_enforced", DISABLED)
    # Envoy's default is UNAVAILABLE for a limited gRPC call; mosn's, RESOURCE_EXHAUSTED
    data["rate_limited_as_resource_exhausted"] = bool(
        f.message.rate_limited_as_resource_exhausted)
    return checked(f, LocalRateLimitConfig, data)


def proto_data(f: Fields) -> dict[str, Any]:
    """The message as plain data with its fields' proto names (every field is read:
    the filter's model checks them all)."""
    f.accept(*(field.name for field, _ in f.message.ListFields()))
    data = MessageToDict(f.message, preserving_proto_field_name=True)
    return _cidr_lengths(data)


def _cidr_lengths(value: Any) -> Any:
    """Envoy's ``CidrRange`` without ``prefix_len`` is a /0 (mosn's: the whole address)."""
    if isinstance(value, dict):
        if "address_prefix" in value and "prefix_len" not in value:
            value["prefix_len"] = 0
        for item in value.values():
            _cidr_lengths(item)
    elif isinstance(value, list):
        for item in value:
            _cidr_lengths(item)
    return value


def checked(f: Fields, model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` when ``model`` takes it; else an error naming each field it refuses."""
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            reason = err["msg"].removeprefix("Value error, ")
            if reason.startswith(UNSUPPORTED):  # mosn's config-file words for it
                reason = "field not supported by mosn"
            f.error(reason, join_path(err["loc"]))
        return data
    if isinstance(parsed, Model):
        for extra in parsed.extra_keys():
            f.error("field not supported by mosn", extra.path)
    return data


STREAM_FILTERS: dict[str, tuple[str, Callable[[Fields], dict[str, Any]]]] = {
    FAULT: ("fault", fault), RBAC: ("rbac", rbac), LOCAL_RATELIMIT: ("local_ratelimit", local_ratelimit)}
PER_ROUTE: dict[str, tuple[str, Callable[[Fields], dict[str, Any]]]] = {
    FAULT: ("fault", fault), RBAC_PER_ROUTE: ("rbac", rbac_per_route),
    LOCAL_RATELIMIT: ("local_ratelimit", local_ratelimit)}
