//! Who may see and act, checked before every handler ([`check`]):
//!
//! 1. Authentication, when configured: `Authorization: Bearer TOKEN`, or basic auth with the
//!    user and password (a browser asks for them after the 401). Compared in constant time.
//! 2. A CSRF token per browser, bound to a secret of this server: `NONCE.MAC` (a random
//!    nonce of 32 hex digits and its HMAC-SHA256 under the server's key) in the
//!    `stevedore_csrf` cookie (HttpOnly, SameSite=Strict), put in every form as the hidden
//!    field `csrf`. A POST is refused with 403 unless its field equals its cookie and the
//!    cookie's MAC is this server's: a cookie planted by a neighbour site (a sibling
//!    subdomain can set cookies) is refused, and so is any short or malformed token. A
//!    browser with a cookie that does not verify gets a fresh one.
//! 3. Read-only: every POST is refused with 403 before anything is read.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use hmac::{Hmac, Mac};

use crate::Web;

/// The cookie that holds a browser's CSRF token.
const CSRF_COOKIE: &str = "stevedore_csrf";
/// The largest form body read (actions carry a token and a confirmation).
const MAX_FORM: usize = 16 * 1024;

/// Who may use the dashboard.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Bearer TOKEN`.
    Token(String),
    /// Basic auth.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Auth::Token(<redacted>)"),
            Self::Basic { user, .. } => write!(f, "Auth::Basic {{ user: {user:?}, .. }}"),
        }
    }
}

/// The CSRF token of the request's browser, for the forms of a page.
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

/// The server's CSRF key (random per process: tokens last as long as the server).
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    /// A fresh random key.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self(key)
    }

    fn mac(&self, nonce: &str) -> String {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(nonce.as_bytes());
        let bytes = mac.finalize().into_bytes();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A new token: a random nonce and its MAC.
    fn issue(&self) -> String {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        format!("{nonce}.{}", self.mac(&nonce))
    }

    /// Whether `token` is one this server issued (a 32-digit hex nonce and its MAC).
    fn issued(&self, token: &str) -> bool {
        let Some((nonce, mac)) = token.split_once('.') else {
            return false;
        };
        let hex = nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit());
        hex && same(mac.as_bytes(), self.mac(nonce).as_bytes())
    }
}

/// Authenticates, refuses actions in read-only mode or without the CSRF token, and gives the
/// page its browser's token (set as a cookie when it had none).
pub async fn check(State(web): State<Arc<Web>>, mut request: Request, next: Next) -> Response {
    if let Some(auth) = &web.config.auth {
        if !authenticated(auth, &request) {
            return unauthorized(auth);
        }
    }
    let cookie = cookie(&request, CSRF_COOKIE).filter(|token| web.csrf_key.issued(token));
    if request.method() == Method::POST {
        if web.config.read_only {
            return (StatusCode::FORBIDDEN, "read-only: actions are off\n").into_response();
        }
        request = match verified(request, cookie.as_deref()).await {
            Ok(request) => request,
            Err(refusal) => return refusal,
        };
    }
    let token = cookie.clone().unwrap_or_else(|| web.csrf_key.issue());
    request.extensions_mut().insert(Csrf(token.clone()));
    let mut response = next.run(request).await;
    if cookie.is_none() {
        let value = format!("{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The request with its body read back in, when its form's `csrf` field matches the cookie
/// (`cookie` is `None` unless this server issued it).
async fn verified(request: Request, cookie: Option<&str>) -> Result<Request, Response> {
    let forbidden = |why: &str| (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return Err(forbidden("the form is too large"));
    };
    let field = form_field(&bytes, "csrf");
    match (cookie, field) {
        (Some(cookie), Some(field)) if same(cookie.as_bytes(), field.as_bytes()) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(forbidden(
            "missing or stale CSRF token: reload the page and try again",
        )),
    }
}

/// Field `name` of a urlencoded form (tokens are hex and a dot: no decoding needed).
fn form_field(body: &Bytes, name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// The value of cookie `name`.
fn cookie(request: &Request, name: &str) -> Option<String> {
    let cookies = request.headers().get_all(header::COOKIE);
    cookies
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

fn authenticated(auth: &Auth, request: &Request) -> bool {
    let Some(given) = request.headers().get(header::AUTHORIZATION) else {
        return false;
    };
    let given = given.as_bytes();
    match auth {
        Auth::Token(token) => given
            .strip_prefix(b"Bearer ")
            .is_some_and(|t| same(t, token.as_bytes())),
        Auth::Basic { user, password } => {
            let expected = format!("{user}:{password}");
            let expected = format!("Basic {}", base64(expected.as_bytes()));
            same(given, expected.as_bytes())
        }
    }
}

fn unauthorized(auth: &Auth) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
    if matches!(auth, Auth::Basic { .. }) {
        let challenge = HeaderValue::from_static("Basic realm=\"stevedore\", charset=\"UTF-8\"");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// Whether `a` and `b` are equal, in time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 with padding (basic auth's encoding).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            match i <= chunk.len() {
                true => out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize])),
                false => out.push('='),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"ops:s3cret"), "b3BzOnMzY3JldA==");
    }

    #[test]
    fn only_tokens_this_server_issued_verify() {
        let (key, other) = (CsrfKey::random(), CsrfKey::random());
        let token = key.issue();
        assert!(key.issued(&token));
        assert!(!other.issued(&token), "another server's token");
        let (nonce, mac) = token.split_once('.').unwrap();
        assert!(!key.issued(nonce), "no MAC");
        assert!(
            !key.issued(&format!("{nonce}.{}", &mac[1..])),
            "a short MAC"
        );
        assert!(
            !key.issued(&format!("{}.{mac}", &nonce[1..])),
            "a short nonce"
        );
        assert!(!key.issued("abc"));
        assert!(!key.issued(""));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
