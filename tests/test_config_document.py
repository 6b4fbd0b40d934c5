"""Reading a config file within bounds: YAML aliases expand only so far, nesting is
bounded, a key written twice is an error; each refused with its path, never a
traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tcp_proxy_config
from test_admin_security import yaml_blocks
from mosn.config import ConfigError, load, read_file
from mosn.config.document import MAX_ALIAS_NODES, MAX_DEPTH, PARSERS, DocumentError, parse_yaml

HOST = "cluster_manager.clusters[0].hosts[0]"

BOMB = """\
cluster_manager:
  clusters:
  - name: backend
    hosts:
    - address: 127.0.0.1:9
      metadata:
        a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
        b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
        c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
        d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
        e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
        f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
        g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
        h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
        i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
"""A billion laughs in 1 KB: 9 ** 9 strings once expanded."""


def errors_in(tmp_path: Path, name: str, text: str) -> list[str]:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        read_file(tmp_path / name)
    return info.value.errors


def validate_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mosn", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)


def nested(levels: int) -> str:
    """A YAML/JSON document whose key ``a`` holds ``levels`` lists inside each other
    (``levels + 1`` with the top-level mapping)."""
    return '{"a": ' + "[" * levels + "]" * levels + "}"


def test_alias_bomb_in_host_metadata_is_refused_with_its_path(tmp_path):
    assert len(BOMB) < 1024
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    out = validate_cli(path)
    assert out.returncode == 1, out.stdout
    assert f"  {HOST}.metadata.f[" in out.stderr
    assert f"aliases expand the document by more than {MAX_ALIAS_NODES} nodes" in out.stderr
    assert "Traceback" not in out.stderr


def test_aliases_within_the_bound_load_as_written(tmp_path):
    (tmp_path / "ok.yaml").write_text(
        "cluster_manager:\n"
        "  clusters:\n"
        "  - name: backend\n"
        "    hosts:\n"
        "    - {address: 127.0.0.1:8080, metadata: &meta {zone: a, labels: [x, y]}}\n"
        "    - {address: 127.0.0.1:8081, metadata: *meta}\n"
        "servers:\n"
        "- listeners:\n"
        "  - address: 127.0.0.1:2045\n"
        "    filter_chains:\n"
        "    - filters: [{type: tcp_proxy, config: {cluster: backend}}]\n")
    hosts = load(tmp_path / "ok.yaml").config.cluster_manager.clusters[0].hosts
    assert [h.metadata for h in hosts] == [{"zone": "a", "labels": ["x", "y"]}] * 2


def test_merge_keys_override_without_being_duplicates(tmp_path):
    data = read_file_text(tmp_path, "base: &base {a: 1, b: 2}\nmine: {<<: *base, b: 3}\n")
    assert data["mine"] == {"a": 1, "b": 3}


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    errors = errors_in(tmp_path, "loop.yaml", "a: &x [1, *x]\n")
    assert errors == ["a[1]: an alias refers to a node that holds it (line 1): a cycle"]


@pytest.mark.parametrize("suffix, levels", [(".yaml", 900), (".json", 5000)])
def test_deep_nesting_is_refused_with_its_path_not_a_recursion_error(tmp_path, suffix, levels):
    # (libyaml stops a YAML document at 1,000 levels itself, with a message of its own)
    path = tmp_path / f"deep{suffix}"
    path.write_text(nested(levels))
    out = validate_cli(path)
    assert out.returncode == 1
    assert "RecursionError" not in out.stderr and "Traceback" not in out.stderr
    assert f"  a{'[0]' * (MAX_DEPTH - 1)}: nested deeper than {MAX_DEPTH} levels (line 1)" \
        in out.stderr


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_the_depth_bound_is_exact(tmp_path, suffix):
    (tmp_path / f"at{suffix}").write_text(nested(MAX_DEPTH - 1))
    assert read_file(tmp_path / f"at{suffix}")["a"] is not None
    assert "nested deeper" in errors_in(tmp_path, f"over{suffix}", nested(MAX_DEPTH))[0]


def test_aliases_cannot_stack_depth_beyond_the_bound(tmp_path):
    half = MAX_DEPTH // 2
    text = (f"a: &a {'[' * half}1{']' * half}\n"
            f"b: &b {'[' * half}*a{']' * half}\n"
            f"c: {'[' * half}*b{']' * half}\n")
    errors = errors_in(tmp_path, "stacked.yaml", text)
    assert errors[0].startswith("b" + "[0]" * half + ": nested deeper than")
    assert "once the alias (anchor at line 1) is expanded" in errors[0]


def test_duplicate_yaml_keys_name_the_key_and_both_lines(tmp_path):
    raw = tcp_proxy_config(2045, ["127.0.0.1:8080"])
    text = yaml.safe_dump(raw, sort_keys=False).replace(
        "  - name: backend\n", "  - name: backend\n    name: other\n")
    path = tmp_path / "dup.yaml"
    path.write_text("pid: /run/a.pid\n" + text + "pid: /run/b.pid\n")
    out = validate_cli(path)
    assert out.returncode == 1
    lines = path.read_text().splitlines()
    name_lines = [i + 1 for i, line in enumerate(lines) if line.strip().startswith(
        ("- name: backend", "name: other"))]
    assert f"  cluster_manager.clusters[0].name: duplicate key (lines {name_lines[0]} and " \
        f"{name_lines[1]})" in out.stderr
    assert f"  pid: duplicate key (lines 1 and {len(lines)})" in out.stderr


def test_duplicate_json_keys_name_the_key_and_both_lines(tmp_path):
    text = '{\n  "servers": [{"listeners": [], "graceful_timeout": "1s",\n' \
           '               "graceful_timeout": "2s"}],\n  "pid": "a", "pid": "b"\n}\n'
    assert errors_in(tmp_path, "dup.json", text) == [
        "servers[0].graceful_timeout: duplicate key (lines 2 and 3)",
        "pid: duplicate key (twice on line 4)",
    ]
    assert errors_in(tmp_path, "escaped.json", '{"a\\u0062": 1, "ab": 2}') == [
        "ab: duplicate key (twice on line 1)"]
    # brackets inside a string that never ends are no nesting: the JSON error is told
    assert "invalid JSON: Unterminated string" in errors_in(
        tmp_path, "open.json", '{"a": "x' + "[" * 100)[0]
    # a key that is also a value elsewhere is no duplicate
    assert read_file_text(tmp_path, '{"a": "b", "b": ["a", {"a": "a"}]}', ".json") == {
        "a": "b", "b": ["a", {"a": "a"}]}


def test_keys_that_differ_only_in_case_are_one_key_twice(tmp_path):
    raw = tcp_proxy_config(2045, ["127.0.0.1:8080"])
    raw["cluster_manager"]["clusters"][0]["Name"] = "other"
    (tmp_path / "case.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "case.json")
    assert info.value.errors == ["cluster_manager.clusters[0]: 'name' and 'Name' are the "
                                 "same key (keys match without regard to case)"]


def test_yaml_keeps_to_json_types(tmp_path):
    data = read_file_text(tmp_path, "when: 2001-12-14\n200: ok\ntrue: yes\n")
    assert data == {"when": "2001-12-14", "200": "ok", "true": True}
    errors = errors_in(tmp_path, "types.yaml",
                       "a: !!binary aGVsbG8=\nb: !!set {x}\nc: {[1, 2]: x}\n")
    assert errors == [
        "a: the YAML type !!binary has no JSON form (line 1)",
        "b: the YAML type !!set has no JSON form (line 2)",
        "c: a mapping key must be a string, not a list (line 3)",
    ]



@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_each_yaml_parser_holds_the_same_bounds(parser):
    """libyaml reads the text where PyYAML has it, PyYAML's own parser elsewhere: the
    same document gives the same errors through either."""
    cases = {
        BOMB: f"{HOST}.metadata.f[0]: aliases expand the document by more than "
              f"{MAX_ALIAS_NODES} nodes (anchor at line 11)",
        nested(200): f"a{'[0]' * (MAX_DEPTH - 1)}: nested deeper than {MAX_DEPTH} levels "
                     "(line 1)",
        "a: 1\nb: {c: 2, c: 3}\na: 4\n": "b.c: duplicate key (twice on line 2)",
        "x: !!binary aGVsbG8=\n": "x: the YAML type !!binary has no JSON form (line 1)",
        "a: &x [1, *x]\n": "a[1]: an alias refers to a node that holds it (line 1): a cycle",
    }
    for text, first in cases.items():
        with pytest.raises(DocumentError) as info:
            parse_yaml(text, parser)
        assert info.value.errors[0] == first
    assert parse_yaml("when: 2001-12-14\n200: ok\n", parser) == {"when": "2001-12-14",
                                                                   "200": "ok"}

def test_the_loader_limits_example_merges_as_it_says(tmp_path):
    (tmp_path / "merge.yaml").write_text(yaml_blocks("config.md", "Limits of the loader")[0])
    blue, green = load(tmp_path / "merge.yaml").config.cluster_manager.clusters
    assert blue.hosts[1].metadata == {"zone": "east", "rack": "r1"}
    assert (green.health_check.protocol, green.health_check.interval,
            green.health_check.timeout) == ("tcp", 10.0, 1.0)


def read_file_text(tmp_path: Path, text: str, suffix: str = ".yaml") -> dict:
    path = tmp_path / f"doc{suffix}"
    path.write_text(text)
    return read_file(path)
