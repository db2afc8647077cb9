"""The embedded middleware: a whole graph in one process, no ROS 2 installation needed."""
from .context import CallbackError, EmbeddedContext, ServiceUnavailable, TopicStats

__all__ = ["CallbackError", "EmbeddedContext", "ServiceUnavailable", "TopicStats"]
