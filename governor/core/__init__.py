"""Pure decision logic: no I/O, no clock, no zmq or torch. Time arrives inside each Observation."""
