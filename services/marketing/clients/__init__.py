"""Clients of other Juhe services marketing calls synchronously (the cashier, for channel coupons)."""
