"""efm_runtime: the middleware seam. Nodes are written once and run on ROS 2 or the embedded middleware.

    from efm_runtime import Node, NodeOptions, get_message, run_node, SENSOR_DATA
"""
from .backend import middleware
from .clock import Time
from .context import create_context, default_context, set_default_context
from .errors import EfmUserError, GraphError, MessageError, ParameterError
from .messages import get_message, get_service, message_type_name
from .node import Node, NodeOptions, build_node
from .qos import COMMANDS, LATCHED, SENSOR_DATA, QoS
from .spin import run_node

__all__ = [
    "COMMANDS", "LATCHED", "SENSOR_DATA", "EfmUserError", "GraphError", "MessageError", "Node",
    "NodeOptions", "ParameterError", "QoS", "Time", "build_node", "create_context", "default_context",
    "get_message", "get_service", "message_type_name", "middleware", "run_node", "set_default_context",
]
