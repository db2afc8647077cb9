"""efm_reset_supervisor: the fleet episode state machine (pure core), operator web page, serial button
box and the supervisor node. Built by the reset supervisor issue."""
