//! Reads the attribute and the item, and refuses what cannot be a task with one clear error.

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ImplItem, Item, LitStr, Pat, ReturnType, Signature, Type};

/// A task as the macro understood it.
pub struct TaskDef {
    /// The item as written, emitted unchanged.
    pub item: TokenStream,
    /// Function task or struct task.
    pub shape: Shape,
    /// What the attribute says.
    pub options: Options,
    /// The signature of the function that runs.
    pub body: Body,
}

/// The options of `#[task(...)]`.
#[derive(Default)]
pub struct Options {
    /// `name = "..."`.
    pub name: Option<LitStr>,
    /// `queue = "..."`.
    pub queue: Option<LitStr>,
    /// `timeout = "30s"`, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `hard_timeout = "35s"`, in milliseconds.
    pub hard_timeout_ms: Option<u64>,
    /// `retries = 3`.
    pub retries: Option<u32>,
    /// `backoff = "1s"`, in milliseconds.
    pub backoff_ms: Option<u64>,
    /// `max_backoff = "10m"`, in milliseconds.
    pub max_backoff_ms: Option<u64>,
    /// `on_duplicate = "discard"`: the variant name of `stevedore::OnDuplicate`.
    pub on_duplicate: Option<syn::Ident>,
    /// `aliases = ["old.name"]`: names a worker also runs this task under.
    pub aliases: Vec<LitStr>,
    /// `record = "failures"`: the variant name of `stevedore::RecordPolicy`.
    pub record: Option<syn::Ident>,
    /// `impact`, `exclusive` and the limit options.
    pub placement: crate::placement::Placement,
}

/// The signature of the function (or `run` method) that runs.
pub struct Body {
    /// The parameters that are task arguments, in order, and where the context goes.
    pub params: Vec<Param>,
    /// `async fn` or plain `fn`.
    pub is_async: bool,
    /// Whether the body returns a `Result`.
    pub returns_result: bool,
    /// The return type, for the compile-time serializability check.
    pub output: Option<Type>,
}

impl Body {
    /// The type a successful run yields: `T` of a `Result<T, _>`, the return type itself
    /// otherwise, `()` without one. Typed handles (`TaskHandle<T>`) decode results into it.
    pub fn success_type(&self) -> Type {
        let unit = || syn::parse_quote!(());
        let Some(output) = &self.output else {
            return unit();
        };
        if !self.returns_result {
            return output.clone();
        }
        let first_arg = last_segment(output).and_then(|segment| match &segment.arguments {
            syn::PathArguments::AngleBracketed(args) => args.args.first(),
            _ => None,
        });
        match first_arg {
            Some(syn::GenericArgument::Type(ty)) => ty.clone(),
            _ => unit(),
        }
    }
}

/// What carries the task.
pub enum Shape {
    /// `#[task] fn add(...)`: the function's name and visibility.
    Function { ident: Ident, vis: syn::Visibility },
    /// `#[task] impl Adder { fn run(&self, ...) }`: the type.
    Struct {
        self_ty: Box<Type>,
        type_name: Ident,
    },
}

/// One parameter of the task function.
pub enum Param {
    /// A task argument: `a: i64`.
    Argument { ident: Ident, ty: Box<Type> },
    /// The run's context: `ctx: TaskContext`.
    Context,
}

/// Parses `#[task(attr)] item`.
pub fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<TaskDef> {
    let options = parse_options(attr)?;
    let def = parse_item(item, options)?;
    def.options.placement.check_key(&def.body.params)?;
    Ok(def)
}

fn parse_item(item: TokenStream, options: Options) -> syn::Result<TaskDef> {
    match syn::parse2::<Item>(item.clone())? {
        Item::Fn(f) => {
            let body = check_signature(&f.sig, false)?;
            Ok(TaskDef {
                item,
                shape: Shape::Function {
                    ident: f.sig.ident.clone(),
                    vis: f.vis.clone(),
                },
                options,
                body,
            })
        }
        Item::Impl(block) => parse_impl(block, item, options),
        other => Err(syn::Error::new(
            other.span(),
            "#[task] goes on a function, or on the `impl` block of a struct that has `fn run(&self, ...)`",
        )),
    }
}

fn parse_impl(block: syn::ItemImpl, item: TokenStream, options: Options) -> syn::Result<TaskDef> {
    if let Some((_, path, _)) = &block.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "#[task] goes on the type's own `impl` block, not on a trait impl",
        ));
    }
    no_generics(&block.generics, "a struct task")?;
    let type_name = match &*block.self_ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    }
    .ok_or_else(|| syn::Error::new(block.self_ty.span(), "#[task] needs a named struct type"))?;
    let run = block
        .items
        .iter()
        .find_map(|i| match i {
            ImplItem::Fn(f) if f.sig.ident == "run" => Some(f),
            _ => None,
        })
        .ok_or_else(|| {
            syn::Error::new(
                block.self_ty.span(),
                "a struct task's `impl` block must hold `fn run(&self, ...)`",
            )
        })?;
    let body = check_signature(&run.sig, true)?;
    Ok(TaskDef {
        item,
        shape: Shape::Struct {
            self_ty: block.self_ty.clone(),
            type_name,
        },
        options,
        body,
    })
}

fn parse_options(attr: TokenStream) -> syn::Result<Options> {
    let mut options = Options::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            options.name = Some(non_empty(meta.value()?.parse()?)?);
        } else if meta.path.is_ident("queue") {
            options.queue = Some(non_empty(meta.value()?.parse()?)?);
        } else if meta.path.is_ident("timeout") {
            options.timeout_ms = Some(duration_ms(meta.value()?.parse()?)?);
        } else if meta.path.is_ident("hard_timeout") {
            options.hard_timeout_ms = Some(duration_ms(meta.value()?.parse()?)?);
        } else if meta.path.is_ident("retries") {
            let retries: syn::LitInt = meta.value()?.parse()?;
            options.retries = Some(retries.base10_parse()?);
        } else if meta.path.is_ident("backoff") {
            options.backoff_ms = Some(duration_ms(meta.value()?.parse()?)?);
        } else if meta.path.is_ident("max_backoff") {
            options.max_backoff_ms = Some(duration_ms(meta.value()?.parse()?)?);
        } else if meta.path.is_ident("on_duplicate") {
            options.on_duplicate = Some(on_duplicate(meta.value()?.parse()?)?);
        } else if meta.path.is_ident("aliases") {
            options.aliases = aliases(meta.value()?.parse()?)?;
        } else if meta.path.is_ident("record") {
            options.record = Some(record(meta.value()?.parse()?)?);
        } else if !options.placement.parse_meta(&meta)? {
            return Err(meta.error(format!(
                "unknown #[task] option; expected one of `name`, `queue`, `timeout`, `hard_timeout`, `retries`, `backoff`, `max_backoff`, `on_duplicate`, `aliases`, `record`, {}",
                crate::placement::NAMES
            )));
        }
        Ok(())
    });
    syn::parse::Parser::parse2(parser, attr)?;
    options.placement.check()?;
    if let (Some(soft), Some(hard)) = (options.timeout_ms, options.hard_timeout_ms) {
        if hard < soft {
            return Err(syn::Error::new(
                Span::call_site(),
                "`hard_timeout` must not be shorter than `timeout`",
            ));
        }
    }
    Ok(options)
}

/// Parses `["old.name", ...]`: each a non-empty string.
fn aliases(list: syn::ExprArray) -> syn::Result<Vec<LitStr>> {
    list.elems
        .iter()
        .map(|elem| match elem {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(name),
                ..
            }) => non_empty(name.clone()),
            other => Err(syn::Error::new(
                other.span(),
                "an alias is a task name in quotes: aliases = [\"old.name\"]",
            )),
        })
        .collect()
}

/// Parses an `on_duplicate` policy name into its `OnDuplicate` variant.
fn on_duplicate(lit: LitStr) -> syn::Result<syn::Ident> {
    variant(
        lit,
        &[
            ("parallel", "Parallel"),
            ("discard", "Discard"),
            ("serial", "Serial"),
            ("queue_one", "QueueOne"),
        ],
    )
}

/// Parses a record policy name into its `RecordPolicy` variant.
fn record(lit: LitStr) -> syn::Result<syn::Ident> {
    variant(
        lit,
        &[("all", "All"), ("failures", "Failures"), ("none", "None")],
    )
}

/// The variant `lit` names among `(name, variant)` pairs; the error lists the names.
fn variant(lit: LitStr, names: &[(&str, &str)]) -> syn::Result<syn::Ident> {
    let value = lit.value();
    match names.iter().find(|(name, _)| *name == value) {
        Some((_, variant)) => Ok(syn::Ident::new(variant, lit.span())),
        None => {
            let quoted: Vec<String> = names.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            let (last, rest) = quoted.split_last().expect("names are given");
            let expected = format!("expected {} or {last}", rest.join(", "));
            Err(syn::Error::new(lit.span(), expected))
        }
    }
}

/// Parses `"500ms"`, `"30s"`, `"5m"` or `"1h"` into milliseconds.
fn duration_ms(lit: LitStr) -> syn::Result<u64> {
    let text = lit.value();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor = match unit {
        "ms" => Some(1),
        "s" => Some(1000),
        "m" => Some(60_000),
        "h" => Some(3_600_000),
        _ => None,
    };
    match (number.parse::<u64>(), factor) {
        (Ok(n), Some(factor)) if n > 0 => Ok(n * factor),
        _ => Err(syn::Error::new(
            lit.span(),
            "expected a positive duration such as \"500ms\", \"30s\", \"5m\" or \"1h\"",
        )),
    }
}

fn non_empty(lit: LitStr) -> syn::Result<LitStr> {
    if lit.value().is_empty() {
        return Err(syn::Error::new(lit.span(), "must not be empty"));
    }
    Ok(lit)
}

fn no_generics(generics: &syn::Generics, what: &str) -> syn::Result<()> {
    match generics.params.first() {
        Some(param) => Err(syn::Error::new(
            param.span(),
            format!("{what} cannot be generic: the worker must know the concrete argument types to decode them"),
        )),
        None => Ok(()),
    }
}

/// Checks a task signature; `method` is true for a struct's `run`, which must take `&self`.
fn check_signature(sig: &Signature, method: bool) -> syn::Result<Body> {
    no_generics(&sig.generics, "a #[task] function")?;
    let mut params = Vec::new();
    let mut has_receiver = false;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) if method => {
                if r.reference.is_none() || r.mutability.is_some() {
                    return Err(syn::Error::new(
                        r.span(),
                        "a struct task's `run` takes `&self`",
                    ));
                }
                has_receiver = true;
            }
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(
                    r.span(),
                    "`self` is not allowed in a #[task] function; for a struct task put #[task] on the `impl` block that holds `fn run(&self, ...)`",
                ));
            }
            FnArg::Typed(typed) => params.push(check_param(typed, &params)?),
        }
    }
    if method && !has_receiver {
        return Err(syn::Error::new(
            sig.ident.span(),
            "a struct task's `run` takes `&self`",
        ));
    }
    let (returns_result, output) = match &sig.output {
        ReturnType::Default => (false, None),
        ReturnType::Type(_, ty) => (is_result(ty), Some((**ty).clone())),
    };
    Ok(Body {
        params,
        is_async: sig.asyncness.is_some(),
        returns_result,
        output,
    })
}

fn check_param(typed: &syn::PatType, earlier: &[Param]) -> syn::Result<Param> {
    if is_context(&typed.ty) {
        if earlier.iter().any(|p| matches!(p, Param::Context)) {
            return Err(syn::Error::new(
                typed.span(),
                "a task takes at most one `TaskContext`",
            ));
        }
        return Ok(Param::Context);
    }
    let Pat::Ident(pat) = &*typed.pat else {
        return Err(syn::Error::new(
            typed.pat.span(),
            "task parameters must be plain names (`a: i64`): the name is the keyword argument",
        ));
    };
    if let Type::Reference(r) = &*typed.ty {
        return Err(syn::Error::new(
            r.span(),
            "task arguments must be owned values (`String`, not `&str`): they are decoded from the message",
        ));
    }
    if let Type::ImplTrait(t) = &*typed.ty {
        return Err(syn::Error::new(
            t.span(),
            "a #[task] function cannot take `impl Trait`: the worker must know the concrete argument types",
        ));
    }
    Ok(Param::Argument {
        ident: pat.ident.clone(),
        ty: typed.ty.clone(),
    })
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

fn is_context(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "TaskContext")
}

fn is_result(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Result")
}
