//! The scope an operation needs, as a type: a handler that takes
//! `Caller<need::ExecutionsWrite>` runs only for a verified caller holding
//! `executions:write` (or `admin`), and the check happens before anything
//! else of the request is read (a body a caller may not send is never
//! parsed: 403, not 400).

use super::auth::{Principal, Scope, Verifier};
use super::error::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

/// A scope as a type, for [`Caller`].
pub trait Needs {
    const SCOPE: Scope;
}

/// The scopes as types.
pub mod need {
    use super::{Needs, Scope};

    macro_rules! scopes {
        ($($name:ident),* $(,)?) => {
            $(
                #[doc = concat!("Needs the `", stringify!($name), "` scope.")]
                pub struct $name;
                impl Needs for $name {
                    const SCOPE: Scope = Scope::$name;
                }
            )*
        };
    }

    scopes!(
        PluginsRead,
        PluginsWrite,
        SchedulesRead,
        SchedulesWrite,
        ExecutionsRead,
        ExecutionsWrite,
        SecretsRead,
        SecretsWrite,
        SecretsUse,
        EventsWrite,
        Admin,
        Operator,
    );
}

/// A verified caller holding `S`'s scope.
pub struct Caller<S>(pub Principal, PhantomData<S>);

impl<S> Deref for Caller<S> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Needs, St> FromRequestParts<St> for Caller<S>
where
    Arc<Verifier>: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require(S::SCOPE)?;
        Ok(Caller(principal, PhantomData))
    }
}

/// Naming secrets on a run or a schedule hands their values to a plugin,
/// which may pass them on in any encoding: it takes `secrets:use` besides
/// the operation's own scope. `Ok` when `names` is empty.
pub fn may_use_secrets(principal: &Principal, names: &[String]) -> Result<(), ApiError> {
    match names.is_empty() {
        true => Ok(()),
        false => principal.require(Scope::SecretsUse),
    }
}
