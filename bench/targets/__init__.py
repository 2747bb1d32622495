"""What the load runs measure: the broker, the bare-minimum refresh endpoint, oidc-provider."""
