"""Offboarding: one operation that ends a user's access everywhere, and the signals that trigger it."""
