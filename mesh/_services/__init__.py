"""Services: what a node does for its session (mail, claims, …), each built on a ServiceContext."""
