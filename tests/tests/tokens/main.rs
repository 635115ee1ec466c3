//! Who may call the API, through real processes (issue 28): revoked
//! tokens, tokens from an identity provider (a local OIDC server with keys
//! made here), and API keys, each refused on every node once withdrawn.

mod apikeys;
mod idp;
mod revocation;
