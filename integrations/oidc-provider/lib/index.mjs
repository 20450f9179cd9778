// AROP for panva's oidc-provider: requestable denials become OAuth continuation handles.
//
//   const arop = await Arop.connect({ sidecarUrl, sidecarCredential, resourceServers, ... });
//   const provider = new Provider(issuer, arop.configuration(yourConfiguration));
//   arop.install(provider);
//
// `configuration` adds what oidc-provider must know at construction (DPoP, RAR with the
// sidecar's types, CIBA hooks, resource servers, token lifetimes and claims bounded by the
// approval, discovery); `install` replaces the client credentials grant with one the sidecar
// decides, registers the DTR deferred grant and wraps the CIBA grant, and serves the
// transaction authorization endpoint and the sidecar's CIBA notifications. README.md has the
// details; spec ids (OP-n, TX-n) refer to the AROP repository's spec/.

import { errors } from 'oidc-provider';

import { cibaFeature, cibaGrant, cibaNotifications, continuations, NOTIFY_PATH } from './ciba.mjs';
import { extraClaimsOf, grantOf, lifetimeOf } from './minting.mjs';
import { Sidecar } from './sidecar.mjs';
import { tokenEndpointGrants } from './token_endpoint.mjs';
import { transactionEndpoint, TXN_PATH } from './txn.mjs';
import { relayAnswers } from './wire.mjs';

const CHALLENGE_SUPPORT = 'insufficient_client_authorization_supported';
// What oidc-provider computes itself from the configuration below.
const COMPUTED_METADATA = new Set([
  'grant_types_supported', 'authorization_details_types_supported', 'backchannel_token_delivery_modes_supported',
  'backchannel_user_code_parameter_supported',
]);

export class Arop {
  // options:
  //   sidecarUrl, sidecarCredential   the sidecar and this AS's credential there (an API key
  //                                   with the `oauth` scope)
  //   issuer                          this AS's issuer identifier (endpoint URLs derive from it)
  //   resourceServers                 { [resource indicator]: oidc-provider resource server info },
  //                                   the audiences tokens may be minted for (JWT format)
  //   defaultResource                 the resource of a request that names none (RAR needs one)
  //   agentType, userType             the AuthZEN subject types of clients and of users
  //   adapter                         an oidc-provider adapter (class or factory) for the CIBA
  //                                   continuation records; default: in memory
  //   authenticationDevice            CIBA: your own (ctx, request, account, client) trigger for
  //                                   requests policy allows without approval; default: refused
  //   timeoutMs                       per sidecar call
  static async connect(options) {
    const sidecar = new Sidecar({ url: options.sidecarUrl, credential: options.sidecarCredential, timeoutMs: options.timeoutMs });
    return new Arop(options, sidecar, await sidecar.metadata());
  }

  constructor(options, sidecar, served) {
    if (!options.issuer || !options.resourceServers) {
      throw new TypeError('Arop needs the issuer and the resource servers');
    }
    this.options = {
      agentType: 'Agent', userType: 'User', txnPath: TXN_PATH, notifyPath: NOTIFY_PATH, ...options,
    };
    this.sidecar = sidecar;
    this.transports = new Set(served.transports);
    this.metadata = served.metadata;
    this.state = { continuations: continuations(options.adapter) };
  }

  #url(path) {
    const { issuer } = this.options;
    return new URL(path.replace(/^\//, ''), issuer.endsWith('/') ? issuer : `${issuer}/`).href;
  }

  resourceServerInfo(resource) {
    const info = this.options.resourceServers[resource];
    if (!info) {
      throw new errors.InvalidTarget('the resource indicator is not known to this authorization server');
    }
    return info;
  }

  configuration(base = {}) {
    const { features = {}, ttl = {}, discovery = {}, extraClientMetadata = {} } = base;
    const types = this.metadata.authorization_details_types_supported ?? [];
    const baseExtraClaims = base.extraTokenClaims;
    const baseIssueRefreshToken = base.issueRefreshToken;
    const advertised = Object.fromEntries(Object.entries(this.metadata).filter(([name]) => !COMPUTED_METADATA.has(name)));

    // Lifetimes: a token minted from a sidecar grant ends no later than the grant (OP-34).
    const bounded = (name) => (ctx, token, client) => {
      const grant = grantOf(ctx, token);
      if (grant) return lifetimeOf(grant);
      const own = ttl[name];
      return typeof own === 'function' ? own(ctx, token, client) : own;
    };

    return {
      ...base,
      features: {
        ...features,
        dPoP: { ...features.dPoP, enabled: true },
        resourceIndicators: {
          ...features.resourceIndicators,
          enabled: true,
          defaultResource: (ctx, client, oneOf) => oneOf?.[0] ?? this.options.defaultResource,
          useGrantedResource: () => true,
          getResourceServerInfo: (ctx, resource) => this.resourceServerInfo(resource),
        },
        richAuthorizationRequests: {
          ...features.richAuthorizationRequests,
          enabled: true,
          // The sidecar checks each element against the bundle's vocabulary (oauth.toml), and
          // refuses members a type does not declare: oidc-provider only checks the type.
          types: Object.fromEntries(types.map((type) => [type, { validate() {} }])),
          authorizationDetailsForAccessToken: (ctx, token) => {
            const grant = grantOf(ctx, token);
            if (!grant) {
              throw new errors.InvalidAuthorizationDetails('authorization_details are granted through AROP only');
            }
            return grant.authorization_details;
          },
          // Authorization code flows do not go through the sidecar: no details there.
          authorizationDetailsForGrantSource: () => {
            throw new errors.InvalidAuthorizationDetails('authorization_details are granted through AROP only');
          },
          authorizationDetailsForIntrospection: (ctx, token) => token.rar,
        },
        ...(this.transports.has('ciba')
          ? {
            ciba: {
              ...features.ciba,
              ...cibaFeature({ ...this.options, sidecar: this.sidecar, notifyUrl: this.#url(this.options.notifyPath) }, this.state),
            },
          }
          : {}),
      },
      ttl: {
        ...ttl,
        AccessToken: bounded('AccessToken'),
        ClientCredentials: bounded('ClientCredentials'),
      },
      // No refresh token for a grant the sidecar decided: a refresh would have to go through
      // its refresh-check (OP-35, OP-36), which this adapter does not wire.
      issueRefreshToken: async (ctx, client, source) => {
        if (grantOf(ctx)) return false;
        return baseIssueRefreshToken ? baseIssueRefreshToken(ctx, client, source) : undefined;
      },
      extraTokenClaims: async (ctx, token) => {
        const own = baseExtraClaims ? await baseExtraClaims(ctx, token) : undefined;
        const arop = extraClaimsOf(grantOf(ctx, token));
        return own || arop ? { ...own, ...arop } : undefined;
      },
      discovery: {
        ...discovery,
        ...advertised,
        ...(this.transports.has('txn') ? { transaction_authorization_endpoint: this.#url(this.options.txnPath) } : {}),
      },
      extraClientMetadata: {
        ...extraClientMetadata,
        properties: [...(extraClientMetadata.properties ?? []), CHALLENGE_SUPPORT],
        validator: (ctx, key, value, metadata) => {
          if (key === CHALLENGE_SUPPORT && value !== undefined && typeof value !== 'boolean') {
            throw new errors.InvalidClientMetadata(`${CHALLENGE_SUPPORT} must be a boolean`);
          }
          return extraClientMetadata.validator?.(ctx, key, value, metadata);
        },
      },
    };
  }

  install(provider) {
    const context = {
      ...this.options,
      sidecar: this.sidecar,
      resourceServerFor: (resource) => new provider.ResourceServer(resource, this.resourceServerInfo(resource)),
    };
    provider.use(relayAnswers);
    tokenEndpointGrants(provider, context);
    if (this.transports.has('ciba')) {
      cibaGrant(provider, context, this.state);
      provider.use(cibaNotifications(provider, context, this.state));
    }
    if (this.transports.has('txn')) {
      provider.use(transactionEndpoint(provider, context));
    }
    return provider;
  }
}
