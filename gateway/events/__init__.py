"""Events the gateway service publishes (types and payloads) and its consumers."""
