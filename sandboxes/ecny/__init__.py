"""e-CNY acquiring bank sandbox (Juhe's model protocol, not a bank's spec): see README.md and app.create_app."""
