// A real OAuth 2.0 authorization server (oidc-provider) on loopback for the
// OAuth runtime tests. Prints "listening <port>" once it serves.
//
// Clients (fixed; the tests know them):
//   app: authorization_code + refresh_token (refresh tokens always issued and
//        rotated on every use), PKCE S256 required, redirect
//        http://127.0.0.1:9/callback, scope "api:read offline_access".
//   svc: client_credentials, scope "api:read api:write".
// Access tokens live ACCESS_TTL seconds (default 4).
//
// Test hooks (loopback only):
//   GET  /interaction/:uid?user=alice  logs the user in and grants the
//        requested scopes at once (add &deny=1 to answer access_denied).
//   POST /__fault  {"mode": "pass"|"error500"|"rate429"|"slow"|"echo",
//                   "count": n, "delayMs": ms, "retryAfter": s}
//        the next n token requests (default: all) fail that way.
//   GET  /__stats  {"token": requests at /token, "grants": {type: successes}}
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const ttl = Number(process.env.ACCESS_TTL || 4);

const stats = { token: 0, grants: {}, errors: {} };
let fault = { mode: 'pass', count: Infinity };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

function configuration() {
  return {
    clients: [
      {
        client_id: 'app',
        client_secret: 'app-secret-4c1f9d0e7b2a',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1:9/callback'],
        scope: 'api:read offline_access',
      },
      {
        client_id: 'svc',
        client_secret: 'svc-secret-8e3b6a1d5c07',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'api:read api:write',
      },
    ],
    scopes: ['api:read', 'api:write', 'offline_access'],
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      revocation: { enabled: true },
    },
    pkce: { required: () => true },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    ttl: {
      AccessToken: ttl,
      ClientCredentials: ttl,
      AuthorizationCode: 60,
      RefreshToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['connective-test-cookie-key'] },
    findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  };
}

async function main() {
  // Bind first to learn the port, then give the issuer its address.
  const { createServer } = await import('node:http');
  const server = createServer();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = server.address().port;
  const provider = new Provider(`http://127.0.0.1:${actual}`, configuration());

  provider.on('grant.success', (ctx) => {
    const type = ctx.oidc.params.grant_type;
    stats.grants[type] = (stats.grants[type] || 0) + 1;
  });
  provider.on('grant.error', (ctx, err) => {
    const type = (ctx.oidc && ctx.oidc.params && ctx.oidc.params.grant_type) || 'unknown';
    const key = `${type}:${err.error || 'error'}`;
    stats.errors[key] = (stats.errors[key] || 0) + 1;
  });

  provider.use(async (ctx, next) => {
    if (ctx.path === '/__stats') {
      ctx.body = stats;
      return;
    }
    if (ctx.path === '/__fault' && ctx.method === 'POST') {
      const f = JSON.parse((await readBody(ctx.req)) || '{}');
      fault = { mode: f.mode || 'pass', count: f.count ?? Infinity, delayMs: f.delayMs || 0, retryAfter: f.retryAfter ?? 1 };
      ctx.body = { ok: true };
      return;
    }
    if (ctx.path === '/token' && ctx.method === 'POST') {
      stats.token += 1;
      if (fault.mode !== 'pass' && fault.count > 0) {
        fault.count -= 1;
        if (fault.mode === 'error500') {
          ctx.status = 500;
          ctx.body = { error: 'server_error', error_description: 'injected' };
          return;
        }
        if (fault.mode === 'rate429') {
          ctx.status = 429;
          ctx.set('Retry-After', String(fault.retryAfter));
          ctx.body = { error: 'slow_down', error_description: 'injected' };
          return;
        }
        if (fault.mode === 'echo') {
          // A server that echoes what it was sent in its error description.
          const body = new URLSearchParams(await readBody(ctx.req));
          ctx.status = 400;
          ctx.body = {
            error: 'invalid_request',
            error_description: `cannot use ${body.get('refresh_token') || body.get('code') || ''} now`,
          };
          return;
        }
        if (fault.mode === 'slow') {
          await sleep(fault.delayMs);
        }
      }
    }
    const match = ctx.path.match(/^\/interaction\/([^/]+)$/);
    if (match && ctx.method === 'GET') {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      if (ctx.query.deny) {
        await provider.interactionFinished(ctx.req, ctx.res, {
          error: 'access_denied',
          error_description: 'the user declined',
        }, { mergeWithLastSubmission: false });
        return;
      }
      const accountId = ctx.query.user || 'alice';
      const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope || '');
      const grantId = await grant.save();
      await provider.interactionFinished(ctx.req, ctx.res, {
        login: { accountId },
        consent: { grantId },
      }, { mergeWithLastSubmission: false });
      return;
    }
    await next();
  });

  server.on('request', provider.callback());
  process.stdout.write(`listening ${actual}\n`);
}

main().catch((e) => {
  process.stderr.write(`oauth test server failed: ${e.stack || e}\n`);
  process.exit(1);
});
