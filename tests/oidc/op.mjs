// A real OpenID Provider for tests/oidc.rs: panva's oidc-provider (installed
// by scripts/test.sh into target/oidc-provider), on 127.0.0.1 port 0.
//
// Input: one JSON argument {module, redirect_uri, client_secret, mode}.
// Prints "issuer <url>" on stdout once it listens.
//
// Clients: "cloakroom" (confidential, client_secret_basic) with the test
// proxy's redirect URI. Accounts: any login name on the provider's own
// login page (its development interactions); "alice" has an email and the
// groups admin and dev. Claims go into the ID token (conformIdTokenClaims
// off), groups under a "groups" scope.
//
// mode: "normal"; "expired" issues ID tokens whose exp is 10 minutes before
// their iat; "wrong-aud" issues ID tokens for another client id (both signed
// with the provider's real key: an issuer misbehaving, or a token meant for
// someone else).
import crypto from 'node:crypto';
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const opts = JSON.parse(process.argv[2]);
const { default: Provider } = await import(pathToFileURL(opts.module).href);

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: 'op-rsa-1' };

const accounts = {
  alice: { email: 'alice@example.com', email_verified: true, groups: ['admin', 'dev'] },
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'cloakroom',
    client_secret: opts.client_secret,
    redirect_uris: [opts.redirect_uri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signing] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  findAccount: async (ctx, id) => ({
    accountId: id,
    async claims() {
      return { sub: id, name: id, ...(accounts[id] || {}) };
    },
  }),
});

if (opts.mode === 'expired') {
  provider.IdToken.expiresIn = () => -600;
} else if (opts.mode === 'wrong-aud') {
  const issue = provider.IdToken.prototype.issue;
  provider.IdToken.prototype.issue = async function wrongAudience(...args) {
    const real = this.client;
    this.client = new Proxy(real, {
      get(target, prop) {
        if (prop === 'clientId') return 'another-client';
        const v = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    try {
      return await issue.apply(this, args);
    } finally {
      this.client = real;
    }
  };
} else if (opts.mode !== 'normal') {
  throw new Error(`unknown mode ${opts.mode}`);
}

provider.on('server_error', (ctx, err) => console.error('server_error', err));
server.on('request', provider.callback());
console.log(`issuer ${issuer}`);
