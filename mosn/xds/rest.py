"""REST-JSON polling (Envoy's ``api_type: REST``): ``POST /v3/discovery:<type>``.

Each poll is a ``DiscoveryRequest`` in protobuf JSON; it carries the version last
accepted and, after a refused response, its nonce and ``error_detail`` (the NACK).
``304 Not Modified`` means nothing new. The control plane being away changes nothing
that serves; polling goes on at ``refresh_delay``.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format

from mosn.xds.client import Offer, Subscriber, error_detail
from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES, SECRETS, ResourceType

log = logging.getLogger("mosn.xds")

PATHS = {LISTENERS.url: "listeners", CLUSTERS.url: "clusters", ROUTES.url: "routes",
         ENDPOINTS.url: "endpoints", SECRETS.url: "secrets"}
"""Envoy's REST paths: ``/v3/discovery:<this>``."""
NOT_MODIFIED = 304
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # as MAX_MESSAGE_BYTES of the gRPC client


class RestClient(Subscriber):
    """Polls ``base`` (``http://host:port``) for ``types`` every ``refresh_delay``."""

    def __init__(self, base: str, offer: Offer, *, refresh_delay: float,
                 request_timeout: float, **kwargs: Any) -> None:
        super().__init__(offer, **kwargs)
        self.base = base.rstrip("/")
        self.refresh_delay = refresh_delay
        self.request_timeout = request_timeout
        self._nack: dict[str, tuple[str, list[str]]] = {}
        """Type URL -> (nonce, reasons) of the response refused last, sent with the next poll."""

    async def run(self) -> None:
        while True:
            for kind in self.types:
                names = [] if kind.wildcard else self.snapshot.wanted(kind)
                if kind.wildcard or names:
                    await self._poll(kind, names)
            await asyncio.sleep(self.refresh_delay)

    async def _poll(self, kind: ResourceType, names: list[str]) -> None:
        request = discovery_pb2.DiscoveryRequest(
            type_url=kind.url, resource_names=names, node=self.node,
            version_info=self.snapshot.versions.get(kind.url, ""))
        refused = self._nack.pop(kind.url, None)
        if refused is not None:
            request.response_nonce = refused[0]
            request.error_detail.CopyFrom(error_detail(refused[1]))
        body = json_format.MessageToJson(request).encode()
        url = f"{self.base}/v3/discovery:{PATHS[kind.url]}"
        try:
            status, data = await asyncio.to_thread(self._post, url, body)
        except (OSError, urllib.error.URLError) as exc:
            log.warning("xDS: polling %s failed: %s", url, exc)
            self._set_connected(False)
            if self.stats is not None:
                self.stats.failure(kind.short)
            return
        self._set_connected(True)
        if status == NOT_MODIFIED:
            return
        response = discovery_pb2.DiscoveryResponse()
        try:
            json_format.Parse(data, response)
        except json_format.ParseError as exc:
            errors = [f"the response is not a DiscoveryResponse: {exc}"]
            self._refused(kind, "", errors)
        else:
            if not response.type_url:  # REST names the type by the path: a control
                response.type_url = kind.url  # plane may leave it out (sovereign does)
            errors = self.take_sotw(response)
        if errors:
            self._nack[kind.url] = (response.nonce, errors)

    def _post(self, url: str, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout) as reply:
                return reply.status, reply.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as exc:
            if exc.code == NOT_MODIFIED:
                return NOT_MODIFIED, b""
            raise
