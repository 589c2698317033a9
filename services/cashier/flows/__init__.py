"""The cashier's use cases: what happens between an API call (or a channel message, or a worker tick)
and the database, the connectors and the outbox. Routes and worker loops stay thin by calling these."""
