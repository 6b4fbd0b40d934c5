"""The access logs and the tracer a config asks for: each listener's stream observers,
and their shutdown (queued lines written, spans exported)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from mosn.observability.accesslog import AccessLogs
from mosn.observability.roller import LogRoller
from mosn.observability.sofatracer import SofaTraceIds, sofa_tracer

SOFA_DRIVER = "sofatracer"
SKYWALKING_DRIVER = "skywalking"

if TYPE_CHECKING:
    from mosn.config.models import ListenerConfig, MosnConfig
    from mosn.observability.stats import StatsStore


class ObservabilityError(Exception):
    """An access log file cannot be opened; the message says which and why."""


class Observability:
    def __init__(self, config: "MosnConfig") -> None:
        self.access_logs = AccessLogs()
        self.tracing: Any = None
        self.sofa_log_path: str | None = None
        """The SOFATracer driver's folder (None: that driver is not on)."""
        self._sofa_ids = SofaTraceIds()
        if config.tracing.enable and config.tracing.driver.lower() == SOFA_DRIVER:
            self.sofa_log_path = config.tracing.config.log_path
        elif config.tracing.enable and config.tracing.driver.lower() == SKYWALKING_DRIVER:
            from mosn.observability.skywalking import SkyWalkingTracer

            self.tracing = SkyWalkingTracer(config.tracing.config)
        elif config.tracing.enable:
            from mosn.observability.tracing import Tracing

            self.tracing = Tracing(config.tracing.config)

    def observers(self, path: str, listener: "ListenerConfig", name: str,
                  store: "StatsStore") -> tuple[Any, ...]:
        """The listener ``name``'s observers: the tracer first (its span is there for
        the access log's ``%trace_id%``), then its access logs, which count the lines
        they drop in ``listener.<name>.access_log_dropped``."""
        observers: list[Any] = [self.tracing] if self.tracing is not None else []
        if self.tracing is not None:
            self.tracing.register_stats(store)
        if self.sofa_log_path is not None and listener.type:
            try:
                observers.append(sofa_tracer(listener.type, self.sofa_log_path,
                                             self.access_logs, self._sofa_ids))
            except OSError as exc:
                raise ObservabilityError(
                    f"tracing.config.log_path: cannot write SOFATracer's digest log of "
                    f"{path} under {self.sofa_log_path or '~/logs/tracelog/mosn/'}: "
                    f"{exc.strerror or exc}") from None
        dropped = store.register(f"listener.{name}.access_log_dropped") \
            if listener.access_logs else -1
        for i, config in enumerate(listener.access_logs):
            try:
                observers.append(self.access_logs.observer(
                    config.log_path, config.log_format, config.json_format, store, dropped))
            except OSError as exc:
                raise ObservabilityError(
                    f"{path}.access_logs[{i}].log_path: cannot open {config.log_path}: "
                    f"{exc.strerror or exc}") from None
        return tuple(observers)

    def reopen_logs(self) -> None:
        """SIGUSR1: every access log file opened again (``logrotate`` or the roller
        moved it)."""
        self.access_logs.reopen()

    def roller(self, config: "MosnConfig", reopen: Callable[[], None]) -> Any:
        """The task that rotates the log files as ``servers[0].global_log_roller``
        says (None without one); ``reopen`` tells every process to reopen them."""
        setting = config.servers[0].global_log_roller if config.servers else None
        if setting is None:
            return None
        return LogRoller(setting, self.access_logs.paths, reopen).run

    def close(self) -> None:
        if self.tracing is not None:
            self.tracing.close()
        self.access_logs.close()
