"""MCP servers and their scopes; resource URI canonicalisation."""
