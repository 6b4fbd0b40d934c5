"""docs/xds.md as written: each YAML block is a config that loads with no warning,
each JSON block a network filter that translates."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from conftest import ROOT
from mosn.config.loader import validate
from mosn.xds.fields import Fields
from mosn.xds.listener import TranslatedListener, network_filter
from mosn.xds.route import route_configuration

TEXT = (ROOT / "docs" / "xds.md").read_text()
YAML = re.findall(r"```yaml\n(.*?)```", TEXT, re.S)
JSON = re.findall(r"```json\n(.*?)```", TEXT, re.S)


def test_there_are_snippets():
    assert len(YAML) >= 2 and len(NETWORK_FILTERS) >= 2 and len(ROUTE_CONFIGURATIONS) >= 1


@pytest.mark.parametrize("block", YAML)
def test_yaml_block_is_a_valid_config(block):
    assert validate(yaml.safe_load(block)).warnings == []


NETWORK_FILTERS = [b for b in JSON if "virtual_hosts" not in json.loads(b)]
ROUTE_CONFIGURATIONS = [b for b in JSON if "virtual_hosts" in json.loads(b)]


@pytest.mark.parametrize("block", NETWORK_FILTERS)
def test_json_block_is_a_network_filter_mosn_takes(block):
    message = json_format.ParseDict(json.loads(block), listener_components_pb2.Filter())
    errors: list[str] = []
    fields = Fields(message, "", errors)
    out = network_filter(fields, "docs", TranslatedListener({}))
    assert errors == [] and list(fields.unread()) == []
    assert out["type"] == "proxy"


@pytest.mark.parametrize("block", ROUTE_CONFIGURATIONS)
def test_json_block_is_a_route_configuration_mosn_takes(block):
    message = json_format.ParseDict(json.loads(block), route_pb2.RouteConfiguration())
    assert route_configuration(message)["virtual_hosts"]
