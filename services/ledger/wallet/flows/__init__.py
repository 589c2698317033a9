"""The wallet's use cases: called by its routes and its event handlers."""
