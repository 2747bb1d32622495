"""Signing keys: generation, encryption at rest, the rotation schedule, and the JWKS."""
