// A real OpenID Connect provider (panva's oidc-provider) for the reviewer web UI's browser
// tests. tests/browser/oidc_provider.py starts it; it is configured entirely from the
// environment:
//
//   OIDC_PORT                      port to listen on, on 127.0.0.1 (the issuer is https://127.0.0.1:PORT)
//   OIDC_TLS_CERT, OIDC_TLS_KEY    PEM files of the server certificate and its key: relying parties
//                                  (the reviewer UI among them) only trust an https issuer
//   OIDC_CLIENT_ID                 the one registered (confidential) client
//   OIDC_CLIENT_SECRET
//   OIDC_REDIRECT_URI
//   OIDC_POST_LOGOUT_REDIRECT_URI  optional
//
// It prints exactly one line, `READY <issuer>`, on stdout once it accepts connections (all of
// oidc-provider's own warnings go to stderr) and exits with 0 on SIGTERM or SIGINT.
//
// Logging in uses oidc-provider's built-in development interactions: a form that takes any
// login name (and any password); the name becomes the account's `sub`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import Provider from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.mjs: environment variable ${name} is required`);
    process.exit(2);
  }
  return value;
}

const port = Number.parseInt(required('OIDC_PORT'), 10);
const issuer = `https://127.0.0.1:${port}`;
const postLogoutRedirectUri = process.env.OIDC_POST_LOGOUT_REDIRECT_URI;

// A signing key made afresh at every start: nothing outlives one test run, so there is no key
// to keep anywhere. RS256 is what the ID tokens are signed with (oidc-provider's default
// id_token_signed_response_alg).
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const client = {
  client_id: required('OIDC_CLIENT_ID'),
  client_secret: required('OIDC_CLIENT_SECRET'),
  redirect_uris: [required('OIDC_REDIRECT_URI')],
  ...(postLogoutRedirectUri ? { post_logout_redirect_uris: [postLogoutRedirectUri] } : {}),
  grant_types: ['authorization_code'],
  response_types: ['code'],
  // A client registers one method, but oidc-provider accepts the secret both in an HTTP Basic
  // header and in the form body for either of client_secret_basic and client_secret_post.
  token_endpoint_auth_method: 'client_secret_basic',
};

function capitalised(name) {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

const provider = new Provider(issuer, {
  clients: [client],
  jwks: { keys: [signingKey] },

  // No offline_access (the default list has it): this client has no refresh tokens.
  scopes: ['openid', 'profile', 'email'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
  },

  // Any login name typed into the dev interaction is an account whose sub is that name.
  // oidc-provider hands out only the claims of the scopes that were granted.
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, preferred_username: sub, name: capitalised(sub), email: `${sub}@example.com` };
      },
    };
  },

  // By default (conformIdTokenClaims: true) a code flow's ID token carries only sub and the
  // claims asked for with the `claims` parameter, the profile and email claims being left to
  // the userinfo endpoint. Like most real providers (Keycloak, Entra ID, Okta), put the claims
  // of the granted scopes in the ID token too, so the UI can read preferred_username from it.
  conformIdTokenClaims: false,

  // oidc-provider 9 requires PKCE only of public clients (and under FAPI 2.0); the reviewer UI
  // is a confidential client and must still use it, so require it of every authorization
  // request. S256 is the only code_challenge_method oidc-provider 9 supports.
  pkce: { required: () => true },

  // The reviewer UI is a first-party client: as at a company's own identity provider, the user
  // is not asked to consent to it. Without this, devInteractions show a consent page ("Continue")
  // after every first login; here every request is granted the scopes and claims it asks for.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    // The session's grant may be gone (revoked, e.g. after an authorization code was replayed,
    // or expired): then start a new one.
    const grant = (grantId && await ctx.oidc.provider.Grant.find(grantId))
      || new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope([...ctx.oidc.requestParamOIDCScopes].join(' '));
    grant.addOIDCClaims([...ctx.oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },

  cookies: {
    // Signed cookies need keys; a random one per run is enough.
    keys: [randomBytes(32).toString('base64url')],
    // Browsers scope cookies by host, not by port, so this provider and the app under test,
    // both on 127.0.0.1, share one cookie jar: give the provider's cookies names of their own.
    names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_interaction_resume' },
  },

  features: {
    devInteractions: { enabled: true }, // the login form (the default; said here because the tests rely on it)
    rpInitiatedLogout: { enabled: true }, // end_session_endpoint (the default too)
  },
});

// TLS is terminated by node itself (no proxy): Koa sees the encrypted socket and oidc-provider
// marks its cookies Secure; `provider.proxy` stays false (no X-Forwarded-Proto is trusted).

// oidc-provider's built-in pages (login form, logout confirmation, error page) @import a
// stylesheet from fonts.googleapis.com, a host that the test machines cannot and should not
// reach: drop that line from every HTML page so the browser never tries (nor logs a failure).
provider.use(async (ctx, next) => {
  await next();
  if (typeof ctx.body === 'string' && ctx.response.is('html')) {
    ctx.body = ctx.body.replace(/@import url\(https:\/\/fonts\.googleapis\.com\/[^)]*\);?/g, '');
  }
});

// oidc-provider answers a failure of its own (or of the hooks above) with a bare 500 page and
// logs nothing: put it on stderr, which the Python helper shows when the test using it fails.
provider.on('server_error', (ctx, error) => console.error('server_error', ctx.method, ctx.path, error));

// oidc-provider validates static clients only when one is first used: check ours now, so that
// a bad OIDC_* value fails the start (with its reason on stderr) rather than the first login.
await provider.Client.find(client.client_id);

const tls = { cert: readFileSync(required('OIDC_TLS_CERT')), key: readFileSync(required('OIDC_TLS_KEY')) };
const server = createServer(tls, provider.callback());
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});

function stop() {
  server.close(() => process.exit(0));
  // Browsers keep idle connections open; drop them so that close() returns at once.
  server.closeAllConnections();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
