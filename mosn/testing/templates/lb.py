"""``--kind lb``: a load balancer, ``LB_NAME``: weighted random."""

DESCRIPTION = "The LB_${NAME} load balancer for mosn: weighted random"
TEST_DEPENDENCIES = ("pytest>=8",)

from mosn.testing.templates import INSTALL, INSTALLED_ONLY

FILES: dict[str, str] = {}

FILES["README.md"] = '''
# mosn-plugin-${name}

The `LB_${NAME}` load balancer for [mosn](https://github.com/mosn/mosn)'s Python data
plane: each pick is a healthy host, not one the request already failed on, with a
chance proportional to its weight.

Written by `mosn plugin new ${name} --kind lb` as a starting point: change it into your
balancer; the conformance suite in `tests/` checks the picks against the weights,
unhealthy and excluded hosts, empty host sets and host sets rebuilt while picking, and
sends traffic through a real mosn while the cluster's hosts change.

## Layout

| file | what it holds |
|---|---|
| `mosn_${name}/lb.py` | `${Name}Balancer`: built for a host set, `choose_host(exclude, context)` per request |
| `mosn_${name}/plugin.py` | registers it with mosn as `LB_${NAME}` |
| `tests/` | the conformance suite |

''' + INSTALL + '''
```yaml
cluster_manager:
  clusters:
    - name: backend
      lb_type: LB_${NAME}
      hosts:
        - {address: 127.0.0.1:12220, weight: 1}
        - {address: 127.0.0.1:12221, weight: 3}
```
'''

FILES["mosn_${name}/__init__.py"] = '''
"""The LB_${NAME} load balancer for mosn: weighted random."""

from mosn_${name}.lb import LB_TYPE, ${Name}Balancer

__all__ = ["LB_TYPE", "${Name}Balancer"]
'''

FILES["mosn_${name}/lb.py"] = '''
"""``LB_${NAME}``: weighted random.

mosn builds a balancer for a cluster's host list (again whenever the list changes)
and calls ``choose_host`` for each request (and each retry, with the hosts already
tried in ``exclude``): it runs per request, so it does little. A host's ``healthy``
says whether health checks and outlier detection let it take requests; it can change
between picks.
"""

from __future__ import annotations

import bisect
import itertools
import random
from typing import Any, Collection, Sequence

from mosn.upstream import Host

LB_TYPE = "LB_${NAME}"
"""The cluster's ``lb_type`` that picks this balancer."""
DRAWS = 4
"""Random draws before choosing among the usable hosts the slow way: with most hosts
healthy and none excluded, the first draw does."""


class ${Name}Balancer:
    def __init__(self, hosts: Sequence[Host], cluster_config: Any = None) -> None:
        self.hosts = list(hosts)
        self.bounds = list(itertools.accumulate(h.weight for h in self.hosts))
        """Host i is drawn for a number in [bounds[i-1], bounds[i])."""

    def choose_host(self, exclude: Collection[Host] = (), context: Any = None) -> Host | None:
        hosts, bounds = self.hosts, self.bounds
        if not hosts:
            return None
        total = bounds[-1]
        for _ in range(DRAWS):
            host = hosts[bisect.bisect_right(bounds, random.random() * total)]
            if host.healthy and host not in exclude:
                return host
        usable = [h for h in hosts if h.healthy and h not in exclude]
        if not usable:
            return None
        return random.choices(usable, weights=[h.weight for h in usable])[0]
'''

FILES["mosn_${name}/plugin.py"] = '''
"""Registers the LB_${NAME} load balancer with mosn."""

from __future__ import annotations

from mosn.plugins import Extension, hookimpl
from mosn_${name}.lb import LB_TYPE, ${Name}Balancer


@hookimpl
def mosn_load_balancers() -> list[Extension]:
    return [Extension(LB_TYPE, ${Name}Balancer, description="weighted random")]
'''

FILES["tests/test_${name}_lb.py"] = '''
"""The balancer against mosn.testing's load balancer conformance suite: picks against
the weights, health, exclusions, empty and changing host sets, and traffic through a
real mosn while the cluster's hosts change."""

from __future__ import annotations

import importlib.metadata

import pytest

from mosn.testing import LoadBalancerConformance
''' + INSTALLED_ONLY + '''

class Test${Name}Conformance(LoadBalancerConformance):
    lb_type = "LB_${NAME}"
    weighted = True
'''
