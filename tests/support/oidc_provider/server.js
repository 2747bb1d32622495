// A real OpenID provider for the broker's end-to-end tests: panva/node-oidc-provider (OpenID Certified),
// configured like a company IdP with one application (the broker), a few users and a `groups` claim.
// TESTS ONLY: in-memory storage, users and passwords from a JSON file, plain http on loopback.
//
//   node server.js --config provider.json [--port 9000]
//
// provider.json (written by tests/support/oidc_provider.py):
//   {
//     "port": 9000,                                  // used when --port is absent
//     "keys_path": "/tmp/x/signing-keys.json",       // optional: signing keys survive restarts
//     "strict": false,                               // true: oidc-provider's own defaults (see below)
//     "clients": [{"client_id": "...", "client_secret": "...",
//                  "redirect_uris": ["http://127.0.0.1:8000/callback/corp"]}],
//     "users": [{"username": "alice", "password": "...", "sub": "alice", "email": "alice@corp.example",
//                "name": "Alice Anders", "groups": ["engineering"]}]
//   }
//
// Issuer: http://127.0.0.1:<port>. oidc-provider accepts an http issuer as it is; it only marks its
// cookies `Secure` when the request is https, so nothing is relaxed for loopback http (no `proxy`, no
// NODE_ENV). Its own default checks stay on; what differs from the defaults is listed in `configuration`.
//
// With "strict": true the provider keeps oidc-provider's defaults where this file otherwise relaxes them:
// claims of the granted scopes only at userinfo (conformIdTokenClaims), and refresh tokens only for
// offline_access asked with prompt=consent (OIDC Core §11); clients may use the refresh_token grant, and
// token revocation (RFC 7009) is on. A test-only route then revokes a user's grants, as a user removing
// the application at the IdP would: POST /test/revoke-grants with form field `sub`.
//
// Interactions are ours (devInteractions accept any password): GET /interaction/:uid shows a login form
// (`username`, `password`) or a consent form (hidden `prompt=consent`, buttons `decision=allow|deny`).
// Prints "oidc-provider ready <issuer>" on stdout once listening; exits 0 on SIGTERM or SIGINT.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';
const MAX_FORM_BYTES = 16 * 1024;

const { values: args } = parseArgs({ options: { config: { type: 'string' }, port: { type: 'string' } } });
if (!args.config) {
  console.error('usage: node server.js --config provider.json [--port PORT]');
  process.exit(2);
}
const config = JSON.parse(readFileSync(args.config, 'utf8'));
const port = Number(args.port ?? config.port);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`invalid port: ${args.port ?? config.port}`);
  process.exit(2);
}
const issuer = `http://${HOST}:${port}`;
const strict = config.strict === true;
const grantsByAccount = new Map(); // strict: the grants consent created, per account, for /test/revoke-grants
const users = new Map(config.users.map((u) => [u.sub ?? u.username, { ...u, sub: u.sub ?? u.username }]));

// ------------------------------------------------------------------ signing keys

function newSigningKeys() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'ES256', use: 'sig' }] };
}

// An IdP keeps its keys across restarts; with keys_path so does this one (the broker caches the JWKS).
function signingKeys() {
  if (!config.keys_path) return newSigningKeys();
  if (existsSync(config.keys_path)) return JSON.parse(readFileSync(config.keys_path, 'utf8'));
  const jwks = newSigningKeys();
  writeFileSync(config.keys_path, JSON.stringify(jwks), { mode: 0o600 });
  return jwks;
}

// ------------------------------------------------------------------ provider

const configuration = {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: strict ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  })),
  jwks: signingKeys(),
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: strict ? ['openid', 'offline_access', 'email', 'profile', 'groups'] : ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // Relaxed: put the claims of the granted scopes into the ID token even though an access token is issued
  // too, as enterprise IdPs are often set up. Strict: oidc-provider's default, claims only at userinfo.
  conformIdTokenClaims: strict,
  responseTypes: ['code'],
  pkce: { required: () => true }, // every client, confidential ones included (OAuth 2.1)
  ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 600, IdToken: 600 }, // seconds
  features: { devInteractions: { enabled: false }, revocation: { enabled: strict } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, sub) {
    const user = users.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub, email: user.email, email_verified: true, name: user.name, groups: [...(user.groups ?? [])],
        };
      },
    };
  },
};

const provider = new Provider(issuer, configuration);
for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
  provider.on(event, (_ctx, err) => console.error(`oidc-provider ${event}: ${err.name}: ${err.message}`
    + (err.error_description ? ` (${err.error_description})` : '')));
}

// ------------------------------------------------------------------ interactions (login, consent)

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, title, body, status = 200) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head>`
    + `<body><h1>${escape(title)}</h1>${body}</body></html>`);
}

function loginPage(res, uid, error) {
  const alert = error ? `<p role="alert">${escape(error)}</p>` : '';
  page(res, 'Sign in', `${alert}<form method="post" action="/interaction/${escape(uid)}/login">`
    + '<label>Username <input type="text" name="username" autocomplete="username" required></label>'
    + '<label>Password <input type="password" name="password" autocomplete="current-password" required></label>'
    + '<button type="submit">Sign in</button></form>');
}

function consentPage(res, uid, clientId, scopes) {
  page(res, 'Allow access?', `<p>${escape(clientId)} asks for: ${escape(scopes.join(' '))}</p>`
    + `<form method="post" action="/interaction/${escape(uid)}/consent">`
    + '<input type="hidden" name="prompt" value="consent">'
    + '<button type="submit" name="decision" value="allow">Allow</button>'
    + '<button type="submit" name="decision" value="deny">Deny</button></form>');
}

async function readForm(req) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw Object.assign(new Error('form too large'), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function userFor(username, password) {
  const user = [...users.values()].find((u) => u.username === username);
  return user && user.password === password ? user : undefined;
}

async function showInteraction(req, res, uid) {
  const { prompt, params } = await provider.interactionDetails(req, res);
  if (prompt.name === 'login') return loginPage(res, uid);
  if (prompt.name === 'consent') return consentPage(res, uid, params.client_id, String(params.scope).split(' '));
  return page(res, 'Not implemented', `<p>prompt ${escape(prompt.name)}</p>`, 501);
}

async function submitLogin(req, res, uid) {
  await provider.interactionDetails(req, res); // 400 unless the interaction cookie matches uid
  const form = await readForm(req);
  const user = userFor(form.get('username'), form.get('password'));
  if (!user) return loginPage(res, uid, 'Invalid username or password.');
  return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
}

async function submitConsent(req, res) {
  const { prompt: { details }, grantId, session, params } = await provider.interactionDetails(req, res);
  const form = await readForm(req);
  if (form.get('decision') !== 'allow') {
    const denied = { error: 'access_denied', error_description: 'End-User denied the request' };
    return provider.interactionFinished(req, res, denied, { mergeWithLastSubmission: false });
  }
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const savedId = await grant.save();
  grantsByAccount.set(session.accountId, new Set([...(grantsByAccount.get(session.accountId) ?? []), savedId]));
  const result = { consent: { grantId: savedId } };
  return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|consent))?$/;

// strict only: what a user removing the application at the IdP does; every token of those grants dies.
async function revokeGrants(req, res) {
  const sub = (await readForm(req)).get('sub');
  const revoked = [];
  for (const grantId of grantsByAccount.get(sub) ?? []) {
    const grant = await provider.Grant.find(grantId);
    if (grant) { await grant.destroy(); revoked.push(grantId); }
  }
  grantsByAccount.delete(sub);
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ revoked: revoked.length }));
}

async function interaction(req, res, match) {
  const [, uid, step] = match;
  if (!step && req.method === 'GET') return showInteraction(req, res, uid);
  if (step === 'login' && req.method === 'POST') return submitLogin(req, res, uid);
  if (step === 'consent' && req.method === 'POST') return submitConsent(req, res);
  return page(res, 'Method not allowed', '', 405);
}

// ------------------------------------------------------------------ server

const providerCallback = provider.callback();

const server = createServer((req, res) => {
  const path = new URL(req.url, issuer).pathname;
  if (strict && path === '/test/revoke-grants' && req.method === 'POST') {
    return revokeGrants(req, res).catch((err) => page(res, 'Failed', escape(err.message), 500));
  }
  const match = INTERACTION.exec(path);
  if (!match) return providerCallback(req, res);
  return interaction(req, res, match).catch((err) => {
    console.error(`interaction failed: ${err.name}: ${err.message}`);
    if (!res.headersSent) page(res, 'Sign-in failed', `<p role="alert">${escape(err.message)}</p>`, err.status ?? 400);
    else res.end();
  });
});

function shutdown(signal) {
  console.log(`oidc-provider stopping (${signal})`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

server.on('error', (err) => {
  console.error(`oidc-provider cannot listen on ${HOST}:${port}: ${err.message}`);
  process.exit(1);
});
server.listen(port, HOST, () => console.log(`oidc-provider ready ${issuer}`));
