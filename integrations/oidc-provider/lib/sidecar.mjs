// The AROP sidecar's AS-facing API (docs/integrating-an-as.md in the AROP repository), as this
// Authorization Server calls it. Every OAuth outcome is a 200 whose JSON says what to answer;
// anything else means the sidecar cannot decide, and the AS fails closed: no token is minted
// and the client is told `temporarily_unavailable` (503) so that it retries later.

import { errors } from 'oidc-provider';

export class SidecarUnavailable extends errors.TemporarilyUnavailable {
  constructor(detail) {
    super('the access decision service is unavailable, try again later', detail);
    this.status = 503;
    this.statusCode = 503;
  }
}

export class Sidecar {
  // url: the sidecar's base URL; credential: its API key (or a JWT) for this AS, sent as a
  // bearer token and never logged; timeoutMs: how long one call may take.
  constructor({ url, credential, timeoutMs = 5000 }) {
    if (!url || !credential) {
      throw new TypeError('the sidecar needs a url and a credential');
    }
    this.url = url.replace(/\/+$/, '');
    this.authorization = `Bearer ${credential}`;
    this.timeoutMs = timeoutMs;
  }

  decide(request) {
    return this.#call('POST', '/oauth/v1/decide', request);
  }

  redeem(request) {
    return this.#call('POST', '/oauth/v1/redeem', request);
  }

  cancel(request) {
    return this.#call('POST', '/oauth/v1/cancel', request);
  }

  metadata() {
    return this.#call('GET', '/oauth/v1/metadata');
  }

  async #call(method, path, body) {
    let response;
    try {
      response = await fetch(this.url + path, {
        method,
        headers: {
          authorization: this.authorization,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        redirect: 'error',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (cause) {
      throw new SidecarUnavailable(`${method} ${path}: ${cause.name}`);
    }
    if (response.status !== 200) {
      // A 4xx problem means this adapter sent something the sidecar refuses (a bug or a
      // misconfigured credential); a 5xx an outage. Neither may turn into a token.
      const problem = await response.text().catch(() => '');
      throw new SidecarUnavailable(`${method} ${path}: HTTP ${response.status} ${problem.slice(0, 200)}`);
    }
    try {
      return await response.json();
    } catch {
      throw new SidecarUnavailable(`${method} ${path}: the answer is not JSON`);
    }
  }
}
