// The peer for issue 9's load runs: panva/node-oidc-provider (the install under
// tests/support/oidc_provider/node_modules), configured with the broker's token format:
//   - JWT access tokens (RFC 9068) for one resource indicator, signed ES256, 1 h like the broker's bench config;
//   - refresh tokens rotated on every use (rotateRefreshToken: true), kept in the default in-memory adapter;
//   - confidential clients authenticating with client_secret_basic: "app" (refresh), "rs" (introspection) and
//     "m2m" (client_credentials, the same JWT access token for the one resource).
// BENCHMARK ONLY: in-memory storage, plain http on loopback, and POST /bench/mint, which creates grants
// and tokens through the provider's own model API (Grant, RefreshToken, AccessToken .save() into the
// adapter) instead of driving the interaction pages, so setup costs nothing that the runs measure.
//
//   node oidc_provider_server.mjs --modules DIR --port PORT --resource URL --secret SECRET
//
// POST /bench/mint?n=N answers {"refresh_tokens": [...N], "access_tokens": [...N]}; the access tokens
// are opaque (no resource), because oidc-provider refuses to introspect JWT access tokens.
// Prints "oidc-provider ready <issuer>" once listening; GET /readyz answers 200.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    modules: { type: 'string' }, port: { type: 'string' }, resource: { type: 'string' }, secret: { type: 'string' },
  },
});
if (!args.modules || !args.port || !args.resource || !args.secret) {
  console.error('usage: node oidc_provider_server.mjs --modules DIR --port PORT --resource URL --secret SECRET');
  process.exit(2);
}
// An absolute import: this script is not under the node_modules it uses (one install, in tests/support).
const { default: Provider } = await import(pathToFileURL(join(args.modules, 'oidc-provider', 'lib', 'index.js')).href);

const HOST = '127.0.0.1';
const port = Number(args.port);
const issuer = `http://${HOST}:${port}`;
const RESOURCE = args.resource;
const SCOPE = 'tools:read';
const DAY = 86400;

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const client = (clientId, grantTypes) => ({
  client_id: clientId,
  client_secret: args.secret,
  grant_types: grantTypes,
  redirect_uris: grantTypes.length ? ['http://127.0.0.1:9/cb'] : [],
  response_types: grantTypes.length ? ['code'] : [],
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: 'ES256', // the only key is an ES256 one
});

const provider = new Provider(issuer, {
  clients: [client('app', ['authorization_code', 'refresh_token']), client('rs', []),
    { ...client('m2m', []), grant_types: ['client_credentials'] }],
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'ES256', use: 'sig' }] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'offline_access'],
  rotateRefreshToken: true,
  ttl: { AccessToken: 3600, RefreshToken: 30 * DAY, Grant: 30 * DAY, Session: DAY, Interaction: 600 },
  async findAccount(_ctx, sub) {
    return { accountId: sub, async claims() { return { sub }; } };
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: SCOPE, audience: RESOURCE, accessTokenTTL: 3600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.on('server_error', (_ctx, err) => console.error(`oidc-provider server_error: ${err.name}: ${err.message}`));

async function mintOne(app, i) {
  const accountId = `user-${i}`;
  const grant = new provider.Grant({ accountId, clientId: 'app' });
  grant.addOIDCScope('openid offline_access');
  grant.addResourceScope(RESOURCE, SCOPE);
  const grantId = await grant.save();
  const now = Math.floor(Date.now() / 1000);
  const common = { accountId, client: app, grantId, gty: 'authorization_code', authTime: now, expiresWithSession: false };
  const refresh = await new provider.RefreshToken({ ...common, scope: `offline_access ${SCOPE}`, resource: RESOURCE }).save();
  const access = await new provider.AccessToken({ ...common, scope: 'openid' }).save();
  return [refresh, access];
}

async function mint(res, n) {
  const app = await provider.Client.find('app');
  const pairs = await Promise.all(Array.from({ length: n }, (_, i) => mintOne(app, i)));
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ refresh_tokens: pairs.map((p) => p[0]), access_tokens: pairs.map((p) => p[1]) }));
}

const callback = provider.callback();
const server = createServer((req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/readyz') return res.end('ok');
  if (url.pathname === '/bench/mint' && req.method === 'POST') {
    return mint(res, Math.min(Number(url.searchParams.get('n') || 1), 10000)).catch((err) => {
      console.error(`mint failed: ${err.message} ${err.error_description ?? ""}`);
      res.writeHead(500).end();
    });
  }
  return callback(req, res);
});
process.on('SIGTERM', () => { server.closeAllConnections(); server.close(() => process.exit(0)); });
server.listen(port, HOST, () => console.log(`oidc-provider ready ${issuer}`));
