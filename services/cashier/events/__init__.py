"""Events the cashier service publishes (types and payloads) and its consumers."""
