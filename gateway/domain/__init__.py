"""Pure domain logic of the gateway service: no framework, database or broker imports."""
