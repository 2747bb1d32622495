"""The bare-minimum refresh endpoint the broker's PostgreSQL refresh rate is compared with."""
