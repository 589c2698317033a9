"""Pure domain logic of the cashier service: no framework, database or broker imports."""
