"""mcp-auth-broker: an enterprise-managed OAuth 2.1 authorization broker for MCP."""

__version__ = "0.1.0"
