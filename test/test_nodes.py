"""Node API behaviour that must be the same on every middleware (runs per backend, see conftest)."""
import pytest

from efm_runtime import COMMANDS, Node, NodeOptions, ParameterError, build_node, get_message, get_service

String = get_message("std_msgs/msg/String")
Clock = get_message("rosgraph_msgs/msg/Clock")
ResetDone = get_service("efm_msgs/srv/ResetDone")


class Talker(Node):
    def __init__(self, options=None):
        super().__init__("talker", options)
        self.pub = self.create_publisher(String, "chatter", COMMANDS)


class Listener(Node):
    def __init__(self, options=None):
        super().__init__("listener", options)
        self.heard = []
        self.create_subscription(String, "chatter", lambda m: self.heard.append(m.data), COMMANDS)


def make(context, cls, **kw):
    return build_node(cls, NodeOptions(context=context, **kw))


def test_pubsub_within_a_namespace_only(context):
    talker_a = make(context, Talker, namespace="/robot_a")
    listener_a = make(context, Listener, namespace="/robot_a")
    listener_b = make(context, Listener, namespace="/robot_b")
    context.spin_until(lambda: talker_a.pub.get_subscription_count() >= 1, 5.0)
    talker_a.pub.publish(String(data="for a"))
    assert context.spin_until(lambda: listener_a.heard == ["for a"], 5.0)
    context.spin_until(lambda: False, 0.2)
    assert listener_b.heard == []


def test_remap_connects_different_names(context):
    talker = make(context, Talker, namespace="/robot_a", remappings={"chatter": "/bus"})
    listener = make(context, Listener, namespace="/robot_b", remappings={"chatter": "/bus"})
    context.spin_until(lambda: talker.pub.get_subscription_count() >= 1, 5.0)
    talker.pub.publish(String(data="shared"))
    assert context.spin_until(lambda: listener.heard == ["shared"], 5.0)


class Configured(Node):
    def __init__(self, options=None):
        super().__init__("configured", options)
        self.rate = self.declare_parameter("rate_hz", 10.0, min=0.1, description="how often").value
        self.robot = self.declare_parameter("robot", "none").value


def test_parameters_defaults_and_overrides(context):
    assert make(context, Configured).rate == 10.0
    node = make(context, Configured, name="other", parameters={"rate_hz": 5, "robot": "a"})
    assert (node.rate, node.robot) == (5.0, "a")
    assert node.get_parameter("rate_hz").value == 5.0


def test_unknown_parameter_override_is_an_error(context):
    with pytest.raises(ParameterError, match="unknown parameter 'rat_hz'; did you mean 'rate_hz'"):
        make(context, Configured, parameters={"rat_hz": 5.0})


def test_out_of_range_parameter_is_an_error(context):
    with pytest.raises(ParameterError, match="rate_hz"):
        make(context, Configured, parameters={"rate_hz": 0.0})


class Resetter(Node):
    def __init__(self, options=None):
        super().__init__("resetter", options)
        self.create_service(ResetDone, "reset_done", self.on_reset)

    def on_reset(self, request, response):
        response.accepted = request.robot == "robot_a"
        response.message = f"reset {request.robot}"
        return response


class Caller(Node):
    def __init__(self, options=None):
        super().__init__("caller", options)


def test_service_call_round_trip(context):
    make(context, Resetter, namespace="/robot_a")
    caller = make(context, Caller, namespace="/robot_a")
    client = caller.create_client(ResetDone, "reset_done")
    assert client.wait_for_service(5.0)
    future = client.call_async(ResetDone.Request(robot="robot_a"))
    assert context.spin_until_future_complete(future, 5.0)
    assert future.result().accepted and future.result().message == "reset robot_a"


class Exploder(Node):
    def __init__(self, options=None):
        super().__init__("exploder", options)
        self.create_subscription(String, "chatter", self.boom, COMMANDS)

    def boom(self, msg):
        raise ValueError(f"cannot handle {msg.data}")


def test_callback_error_is_isolated_and_recorded(context):
    talker = make(context, Talker)
    make(context, Exploder)
    listener = make(context, Listener)
    context.spin_until(lambda: talker.pub.get_subscription_count() >= 2, 5.0)
    for text in ("one", "two"):
        talker.pub.publish(String(data=text))
    assert context.spin_until(lambda: listener.heard == ["one", "two"], 5.0)
    errors = context.callback_errors
    assert len(errors) == 2
    assert errors[0].node == "/exploder" and "cannot handle one" in errors[0].error


class SimTimed(Node):
    def __init__(self, options=None):
        super().__init__("sim_timed", options)
        self.ticks = []
        self.create_timer(0.1, lambda: self.ticks.append(self.get_clock().now().nanoseconds))


class ClockSource(Node):
    def __init__(self, options=None):
        super().__init__("clock_source", options)
        self.pub = self.create_publisher(Clock, "/clock", 10)

    def publish_seconds(self, seconds):
        from efm_runtime import Time
        self.pub.publish(Clock(clock=Time.from_seconds(seconds).to_msg()))


def test_sim_time_timer_follows_clock(context):
    timed = make(context, SimTimed, parameters={"use_sim_time": True})
    source = make(context, ClockSource)
    for step in range(1, 11):  # 1.0 s of sim time in 0.1 s steps
        source.publish_seconds(step * 0.1)
        context.spin_until(lambda: len(timed.ticks) >= step, 5.0)
    assert len(timed.ticks) == 10
    assert timed.ticks[-1] == 1_000_000_000


class HalfBuilt(Node):
    def __init__(self, options=None):
        super().__init__("half_built", options)
        self.create_publisher(String, "chatter", COMMANDS)
        raise RuntimeError("device not found")


def test_node_whose_init_fails_leaves_nothing_behind(context):
    with pytest.raises(RuntimeError, match="device not found"):
        make(context, HalfBuilt)
    assert context.nodes == []
