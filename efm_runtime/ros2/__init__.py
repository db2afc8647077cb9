"""The ``ros2`` middleware: efm nodes on real rclpy (imported only when rclpy is available)."""
