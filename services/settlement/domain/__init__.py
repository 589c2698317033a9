"""Pure domain logic of the settlement service: no framework, database or broker imports."""
