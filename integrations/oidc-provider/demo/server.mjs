// A demo Authorization Server: panva's oidc-provider with AROP, configured by environment.
//
//   AROP_SIDECAR_URL          the AROP service (default http://127.0.0.1:8080)
//   AROP_SIDECAR_KEY          this AS's API key there, with the `oauth` scope (required)
//   AS_HOST, AS_PORT          where to listen (default 127.0.0.1:3000)
//   AS_ISSUER                 the issuer identifier (default http://AS_HOST:AS_PORT)
//   AS_CLIENTS_FILE           oidc-provider client metadata, a JSON array (default demo/clients.json)
//   AS_RESOURCE_SERVERS       the resource indicators tokens may be minted for, space separated
//                             (default https://broker.example)
//   AS_STARTUP_TIMEOUT        seconds to wait for the sidecar's metadata at start (default 60)
//   AS_FETCH_LOOPBACK         `1` lets oidc-provider's outgoing requests (CIBA pings) reach
//                             loopback and private addresses, which its SSRF protection refuses:
//                             for clients on the same machine (the end-to-end tests) only
//
// It prints `READY <issuer>` on stdout once it accepts connections and exits on SIGTERM/SIGINT.
// Users: any login hint names an account of that id (a demo has no user directory); the user
// approves in AROP's reviewer UI. Keys are made afresh at each start.

import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

import Provider from 'oidc-provider';

import { Arop } from '../lib/index.mjs';

function setting(name, fallback) {
  const value = process.env[name];
  if (value) return value;
  if (fallback === undefined) {
    console.error(`demo/server.mjs: environment variable ${name} is required`);
    process.exit(2);
  }
  return fallback;
}

const host = setting('AS_HOST', '127.0.0.1');
const port = Number.parseInt(setting('AS_PORT', '3000'), 10);
const issuer = setting('AS_ISSUER', `http://${host}:${port}`);
const clients = JSON.parse(readFileSync(setting('AS_CLIENTS_FILE', new URL('clients.json', import.meta.url)), 'utf8'));
const resources = setting('AS_RESOURCE_SERVERS', 'https://broker.example').split(' ').filter(Boolean);
const startupTimeout = Number.parseFloat(setting('AS_STARTUP_TIMEOUT', '60'));
const fetchLoopback = setting('AS_FETCH_LOOPBACK', '0') === '1';

function key(type, alg, kid) {
  const options = type === 'rsa' ? { modulusLength: 2048 } : { namedCurve: 'P-256' };
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

// The sidecar may start after the AS (docker compose): wait for its metadata.
async function connect() {
  const deadline = Date.now() + startupTimeout * 1000;
  for (;;) {
    try {
      return await Arop.connect({
        sidecarUrl: setting('AROP_SIDECAR_URL', 'http://127.0.0.1:8080'),
        sidecarCredential: setting('AROP_SIDECAR_KEY'),
        issuer,
        // Access tokens for each resource server are JWTs signed with the AS's ES256 key.
        resourceServers: Object.fromEntries(resources.map((resource) => [resource, {
          scope: '', accessTokenFormat: 'jwt', accessTokenTTL: 900, jwt: { sign: { alg: 'ES256' } },
        }])),
        defaultResource: resources[0],
      });
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(1000);
    }
  }
}

const arop = await connect();

const provider = new Provider(issuer, arop.configuration({
  clients,
  jwks: { keys: [key('ec', 'ES256', 'demo-es256'), key('rsa', 'RS256', 'demo-rs256')] },
  scopes: ['openid'],
  claims: { openid: ['sub'] },
  async findAccount(ctx, sub) {
    return { accountId: sub, async claims() { return { sub }; } };
  },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    ciba: {
      // The hint is the account id; CIBA with AROP needs no user code.
      processLoginHint: (ctx, loginHint) => loginHint,
      processLoginHintToken: () => {
        throw new Provider.errors.InvalidRequest('login_hint_token is not supported here');
      },
    },
  },
  ttl: { ClientCredentials: 900, AccessToken: 900, BackchannelAuthenticationRequest: (ctx, request, client) => {
    const requested = Number(ctx?.oidc?.params?.requested_expiry);
    return Number.isSafeInteger(requested) && requested > 0 ? Math.min(requested, 3600) : 600;
  } },
  pkce: { required: () => true },
  ...(fetchLoopback ? {
    fetch(url, options) {
      delete options.dispatcher; // oidc-provider's SSRF-protected dispatcher
      return globalThis.fetch(url, options);
    },
  } : {}),
}));
arop.install(provider);
provider.on('server_error', (ctx, error) => console.error('server_error', ctx.path, error));
provider.on('arop.ping.error', (ctx, error) => console.error('ping failed', error.message));

const server = createServer(provider.callback());
server.listen(port, host, () => {
  console.log(`READY ${issuer}`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
