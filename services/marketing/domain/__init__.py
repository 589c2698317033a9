"""Pure domain logic of the marketing service: no framework, database or broker imports."""
