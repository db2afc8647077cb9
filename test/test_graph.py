"""Graph files: every shipped config validates; each kind of mistake gets a precise, helpful error."""
from pathlib import Path

import pytest
import yaml

from efm_runtime.embedded import EmbeddedContext
from efm_runtime.errors import GraphError
from efm_runtime.graph import load_graph, parse_graph
from efm_runtime.registry import node_entry_points
from efm_runtime.runner import bring_up

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))
KNOWN = set(node_entry_points())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_graph_validates_and_builds(path):
    graph = load_graph(path, KNOWN)
    context = EmbeddedContext()
    nodes = bring_up(graph, context)
    assert len(nodes) == len(graph.nodes)
    context.shutdown()


def test_smoke_graph_has_two_robots_with_a_chain_each():
    graph = load_graph(ROOT / "config" / "smoke.yaml", KNOWN)
    assert graph.robots == ["robot_a", "robot_b"]
    assert {n.namespace for n in graph.nodes} == {"/robot_a", "/robot_b"}


def graph_error(data, tmp_path=None):
    with pytest.raises(GraphError) as info:
        graph = parse_graph(yaml.safe_load(data), "bad.yaml", KNOWN)
        bring_up(graph, EmbeddedContext())
    return str(info.value)


def test_unknown_node_suggests_closest_executable():
    message = graph_error("robots: {a: {nodes: [{executable: smoke_talkr}]}}")
    assert message.startswith("bad.yaml: robots.a.nodes[0] (smoke_talkr): unknown node executable")
    assert "did you mean 'smoke_talker'" in message


def test_typo_in_key_names_file_place_and_suggestion():
    message = graph_error("robots: {a: {nodes: [{executable: smoke_talker, paramters: {}}]}}")
    assert message == ("bad.yaml: robots.a.nodes[0]: unknown key 'paramters'; did you mean 'parameters'?")
    assert "did you mean 'robots'" in graph_error("robot: {}")


def test_unknown_parameter_names_node_and_suggests():
    message = graph_error("robots: {a: {nodes: [{executable: smoke_talker, parameters: {rate_hx: 5}}]}}")
    assert "bad.yaml: robots.a.nodes[0] (smoke_talker)" in message
    assert "unknown parameter 'rate_hx'; did you mean 'rate_hz'?" in message


def test_wrong_parameter_type():
    message = graph_error("robots: {a: {nodes: [{executable: smoke_talker, parameters: {rate_hz: fast}}]}}")
    assert "parameter 'rate_hz': expected double, got str 'fast'" in message


def test_wrong_structure_types():
    assert "robots.a.nodes: expected a list" in graph_error("robots: {a: {nodes: {executable: x}}}")
    assert "use_sim_time: expected true or false" in graph_error("use_sim_time: 'yes'\nnodes: []")
    assert "missing 'executable'" in graph_error("nodes: [{name: x}]")
    assert "has no nodes" in graph_error("description: empty")


def test_duplicate_node_names_in_one_namespace():
    message = graph_error("robots: {a: {nodes: [{executable: smoke_talker}, {executable: smoke_talker}]}}")
    assert "already runs in namespace /a" in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(GraphError, match="no such graph file"):
        load_graph(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("robots: [unclosed")
    with pytest.raises(GraphError, match="broken.yaml: not valid YAML"):
        load_graph(bad)


def test_robot_namespace_override_and_sim_time_inheritance():
    graph = parse_graph(yaml.safe_load("""
use_sim_time: true
robots:
  arm: {namespace: /lab/arm_1, nodes: [{executable: smoke_talker, use_sim_time: false}]}
nodes: [{executable: smoke_listener, namespace: /ops}]
"""), "g.yaml", KNOWN)
    talker, listener = graph.nodes
    assert (talker.namespace, talker.use_sim_time, talker.robot) == ("/lab/arm_1", False, "arm")
    assert (listener.namespace, listener.use_sim_time, listener.robot) == ("/ops", True, None)


def test_command_line_parameters_override_every_matching_node():
    from efm_runtime.graph import override_parameters

    graph = load_graph(ROOT / "config" / "smoke.yaml", KNOWN)
    changed = override_parameters(graph, ["smoke_talker.rate_hz=2.5", "smoke_listener.log_every=3"])
    talkers = [n for n in changed.nodes if n.executable == "smoke_talker"]
    assert len(talkers) == 2 and all(n.parameters["rate_hz"] == 2.5 for n in talkers)
    assert all(n.parameters["log_every"] == 3 for n in changed.nodes if n.executable == "smoke_listener")
    assert graph.nodes != changed.nodes                      # the loaded graph itself is left alone
    with pytest.raises(GraphError, match="no node 'smoke_talkr'.*did you mean 'smoke_talker'"):
        override_parameters(graph, ["smoke_talkr.rate_hz=1"])
    with pytest.raises(GraphError, match="expected NODE.PARAM=VALUE"):
        override_parameters(graph, ["rate_hz=1"])
