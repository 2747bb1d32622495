"""The built-in test OpenID Connect provider (development and tests only).

``provider.TestIdentityProvider`` is the entry point; the other modules are its protocol core:
``params`` (strict parsing), ``errors`` (wire codes), ``authorize``, ``grants`` (token endpoint),
``jwts``, ``bearer``, ``sealed`` (stateless codes and refresh tokens), ``pkce``, ``scopes``, ``directory``
(users and clients from configuration), ``replay`` (single use of codes). No module here imports
a web framework: ``broker.web.testidp`` adapts HTTP to it.
"""
