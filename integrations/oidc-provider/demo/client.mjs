// A demo OAuth client for the demo AS, with a DPoP key (RFC 9449) kept in a file so that its
// requests across runs come from the same key. Prints the AS's status and JSON answer.
//
//   node demo/client.mjs trade <amount> [deferred]   client_credentials for one buy on alice-main
//   node demo/client.mjs poll <deferral_code>        urn:ietf:params:oauth:grant-type:deferred
//
//   AS_ISSUER        the AS (default http://127.0.0.1:3000)
//   CLIENT_ID        default trader-7;  CLIENT_SECRET  default its secret in demo/clients.json
//   CLIENT_KEY_FILE  the DPoP private key (default demo-client-key.json, made on first use)

import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';

const issuer = process.env.AS_ISSUER ?? 'http://127.0.0.1:3000';
const clientId = process.env.CLIENT_ID ?? 'trader-7';
const clientSecret = process.env.CLIENT_SECRET ?? 'demo-secret-of-trader-7';
const keyFile = process.env.CLIENT_KEY_FILE ?? 'demo-client-key.json';

async function dpopKey() {
  if (!existsSync(keyFile)) {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    writeFileSync(keyFile, JSON.stringify(await exportJWK(privateKey)), { mode: 0o600 });
  }
  const jwk = JSON.parse(readFileSync(keyFile, 'utf8'));
  const { d, ...publicJwk } = jwk;
  return { privateKey: await importJWK(jwk, 'ES256'), publicJwk };
}

async function token(form) {
  const { privateKey, publicJwk } = await dpopKey();
  const url = new URL('token', `${issuer}/`).href;
  const proof = await new SignJWT({ htm: 'POST', htu: url, jti: randomUUID() })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: publicJwk })
    .setIssuedAt()
    .sign(privateKey);
  const response = await fetch(url, {
    method: 'POST',
    headers: { dpop: proof, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: clientId, client_secret: clientSecret, ...form }),
  });
  console.log(`HTTP ${response.status} (DPoP key ${await calculateJwkThumbprint(publicJwk)})`);
  console.log(JSON.stringify(await response.json(), null, 2));
}

const [command, argument, option] = process.argv.slice(2);
if (command === 'trade' && argument) {
  await token({
    grant_type: 'client_credentials',
    resource: 'https://broker.example',
    authorization_details: JSON.stringify([{
      type: 'trade', identifier: 'alice-main', actions: ['buy'], amount: Number(argument),
      business_justification: 'Rebalance after the Q4 dividend',
    }]),
    ...(option === 'deferred' ? { completion_mode: 'deferred' } : {}),
  });
} else if (command === 'poll' && argument) {
  await token({ grant_type: 'urn:ietf:params:oauth:grant-type:deferred', deferral_code: argument });
} else {
  console.error('usage: node demo/client.mjs trade <amount> [deferred] | poll <deferral_code>');
  process.exit(2);
}
