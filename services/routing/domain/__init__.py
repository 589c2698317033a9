"""Pure domain logic of the routing service: no framework, database or broker imports."""
