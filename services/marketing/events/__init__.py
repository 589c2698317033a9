"""Events the marketing service publishes (types and payloads) and its consumers."""
