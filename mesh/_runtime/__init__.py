"""The node runtime: the only code that runs the event loop. `runtime.NodeRuntime` assembles the parts."""
