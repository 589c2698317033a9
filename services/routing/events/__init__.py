"""Events the routing service publishes (types and payloads) and its consumers."""
