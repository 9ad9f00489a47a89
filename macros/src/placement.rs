//! The placement options of `#[task]`: `impact`, `exclusive`, and the cluster-wide limit
//! (`rate_limit`, `burst`, `concurrency`, `limit`, `limit_key`).

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::meta::ParseNestedMeta;
use syn::LitStr;

use crate::parse::Param;

/// What the attribute says about where and how often the task runs.
#[derive(Default)]
pub struct Placement {
    /// `impact = 5`: units of a node's capacity.
    pub impact: Option<u32>,
    /// `exclusive`: the run has its node to itself.
    pub exclusive: bool,
    /// `rate_limit = "100/s"`: (count, period in ms).
    pub rate: Option<(u32, u64)>,
    /// `burst = 10`.
    pub burst: Option<u32>,
    /// `concurrency = 3`.
    pub concurrency: Option<u32>,
    /// `limit = "NAME"`: a named limit defined in Redis.
    pub limit: Option<LitStr>,
    /// `limit_key = "customer_id"`: the argument the limit is keyed by.
    pub limit_key: Option<LitStr>,
}

/// The option names this module reads.
pub const NAMES: &str =
    "`impact`, `exclusive`, `rate_limit`, `burst`, `concurrency`, `limit`, `limit_key`";

impl Placement {
    /// Reads one option if it is a placement option; `Ok(false)` when it is not one.
    pub fn parse_meta(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<bool> {
        let positive = |meta: &ParseNestedMeta<'_>, what: &str| -> syn::Result<u32> {
            let lit: syn::LitInt = meta.value()?.parse()?;
            match lit.base10_parse::<u32>()? {
                0 => Err(syn::Error::new(
                    lit.span(),
                    format!("{what} must be at least 1"),
                )),
                n => Ok(n),
            }
        };
        if meta.path.is_ident("impact") {
            self.impact = Some(positive(meta, "`impact`")?);
        } else if meta.path.is_ident("exclusive") {
            self.exclusive = true;
        } else if meta.path.is_ident("rate_limit") {
            self.rate = Some(rate(meta.value()?.parse()?)?);
        } else if meta.path.is_ident("burst") {
            self.burst = Some(positive(meta, "`burst`")?);
        } else if meta.path.is_ident("concurrency") {
            self.concurrency = Some(positive(meta, "`concurrency`")?);
        } else if meta.path.is_ident("limit") {
            self.limit = Some(limit_name(meta.value()?.parse()?)?);
        } else if meta.path.is_ident("limit_key") {
            self.limit_key = Some(meta.value()?.parse()?);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// Refuses combinations that say two things at once.
    pub fn check(&self) -> syn::Result<()> {
        let own = self.rate.is_some() || self.concurrency.is_some();
        let fail = |message: &str| Err(syn::Error::new(Span::call_site(), message));
        if own && self.limit.is_some() {
            return fail("`limit` names a limit defined in Redis; `rate_limit` and `concurrency` define the task's own: use one or the other");
        }
        if self.burst.is_some() && self.rate.is_none() {
            return fail("`burst` goes with `rate_limit`");
        }
        if self.limit_key.is_some() && !own && self.limit.is_none() {
            return fail("`limit_key` keys a limit: add `rate_limit`, `concurrency` or `limit`");
        }
        Ok(())
    }

    /// Refuses a `limit_key` that names no argument of the task.
    pub fn check_key(&self, params: &[Param]) -> syn::Result<()> {
        match &self.limit_key {
            Some(lit) => key_position(lit, params).map(|_| ()),
            None => Ok(()),
        }
    }

    /// The `impact`, `exclusive` and `limit` fields of the task's `TaskOptions` literal
    /// (after [`Placement::check_key`]).
    pub fn expand(&self, params: &[Param]) -> syn::Result<TokenStream> {
        let impact = match self.impact {
            Some(n) => quote!(::core::option::Option::Some(#n)),
            None => quote!(::core::option::Option::None),
        };
        let exclusive = self.exclusive;
        let limit = self.limit_expr(params)?;
        Ok(quote! { impact: #impact, exclusive: #exclusive, limit: #limit, })
    }

    fn limit_expr(&self, params: &[Param]) -> syn::Result<TokenStream> {
        let own = self.rate.is_some() || self.concurrency.is_some();
        if !own && self.limit.is_none() {
            return Ok(quote!(::core::option::Option::None));
        }
        let none = quote!(::core::option::Option::None);
        let name = match &self.limit {
            Some(name) => quote!(::core::option::Option::Some(#name)),
            None => none.clone(),
        };
        let spec = if own {
            let rate = match self.rate {
                Some((count, per_ms)) => {
                    let burst = self.burst.unwrap_or(1);
                    quote!(::core::option::Option::Some(::stevedore::limits::Rate {
                        count: #count, per_ms: #per_ms, burst: #burst,
                    }))
                }
                None => none.clone(),
            };
            let concurrency = match self.concurrency {
                Some(n) => quote!(::core::option::Option::Some(#n)),
                None => none.clone(),
            };
            quote!(::core::option::Option::Some(::stevedore::limits::LimitSpec {
                rate: #rate, concurrency: #concurrency,
            }))
        } else {
            none.clone()
        };
        let key = match &self.limit_key {
            Some(lit) => {
                let position = key_position(lit, params)?;
                quote!(::core::option::Option::Some(::stevedore::limits::KeyArg {
                    name: #lit, position: #position,
                }))
            }
            None => none,
        };
        Ok(
            quote!(::core::option::Option::Some(::stevedore::limits::TaskLimit {
                name: #name, own: #spec, key: #key,
            })),
        )
    }
}

/// The position of the argument `lit` names among the task's arguments.
fn key_position(lit: &LitStr, params: &[Param]) -> syn::Result<usize> {
    let wanted = lit.value();
    params
        .iter()
        .filter_map(|p| match p {
            Param::Argument { ident, .. } => Some(ident),
            Param::Context => None,
        })
        .position(|ident| *ident == wanted)
        .ok_or_else(|| {
            syn::Error::new(
                lit.span(),
                format!("`limit_key`: the task has no argument named `{wanted}`"),
            )
        })
}

/// Parses `COUNT/UNIT` (`100/s`, `20/m`, `5/h`).
fn rate(lit: LitStr) -> syn::Result<(u32, u64)> {
    let text = lit.value();
    let parsed = text.split_once('/').and_then(|(count, unit)| {
        let count: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
        let per_ms = match unit.trim() {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        Some((count, per_ms))
    });
    parsed.ok_or_else(|| {
        syn::Error::new(
            lit.span(),
            "expected a rate COUNT/UNIT such as \"100/s\", \"20/m\" or \"5/h\"",
        )
    })
}

/// A limit name: the rule of queue names.
fn limit_name(lit: LitStr) -> syn::Result<LitStr> {
    let name = lit.value();
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(lit)
    } else {
        Err(syn::Error::new(
            lit.span(),
            "a limit name is 1 to 128 ASCII letters, digits, `_`, `-` or `.`",
        ))
    }
}
