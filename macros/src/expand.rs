//! Generates the stub, the handler the worker calls, and the link-time registration.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::parse::{Param, Shape, TaskDef};

/// The whole expansion of one task.
pub fn expand(task: &TaskDef) -> TokenStream {
    let item = &task.item;
    let shared = shared_items(task);
    match &task.shape {
        Shape::Function { ident, vis } => {
            let name = match &task.options.name {
                Some(name) => quote!(#name),
                None => quote!(::core::module_path!()),
            };
            let doc = format!(
                "The stevedore stub of task [`{ident}`]: publishes it instead of running it."
            );
            quote! {
                #item

                #[doc = #doc]
                #[allow(non_snake_case, unused_imports, clippy::too_many_arguments)]
                #vis mod #ident {
                    use super::*;

                    /// The registered task name.
                    pub const NAME: &str = #name;

                    #shared
                }
            }
        }
        Shape::Struct { self_ty, type_name } => {
            let name = match &task.options.name {
                Some(name) => quote!(#name),
                None => {
                    let type_name = type_name.to_string();
                    quote!(::core::concat!(::core::module_path!(), "::", #type_name))
                }
            };
            let module = format_ident!("__stevedore_task_{}", type_name);
            let forwards = struct_forwards(task, &module);
            quote! {
                #item

                impl #self_ty {
                    /// The registered task name.
                    pub const TASK_NAME: &'static str = #name;
                    #forwards
                }

                #[doc(hidden)]
                #[allow(non_snake_case, unused_imports, clippy::too_many_arguments)]
                mod #module {
                    use super::*;

                    pub const NAME: &str = <#self_ty>::TASK_NAME;

                    #shared
                }
            }
        }
    }
}

/// The stub as associated functions of a struct task, forwarding to its hidden module.
fn struct_forwards(task: &TaskDef, module: &syn::Ident) -> TokenStream {
    let (idents, types) = arguments(task);
    let success = task.body.success_type();
    let partial = match types.get(1..) {
        Some(rest) if !types.is_empty() => quote! {
            /// This task as a chain's next step: every argument but the first.
            pub fn partial(args: (#(#rest,)*)) -> ::stevedore::Signature {
                #module::partial(args)
            }
        },
        _ => quote!(),
    };
    quote! {
        /// Publishes the task with these arguments and default options.
        pub async fn delay(
            client: &::stevedore::Client,
            #(#idents: #types),*
        ) -> ::stevedore::Result<::stevedore::TaskHandle<#success>> {
            #module::delay(client, #(#idents),*).await
        }

        /// Publishes the task with these arguments (a tuple) and options.
        pub async fn apply_async(
            client: &::stevedore::Client,
            args: (#(#types,)*),
            options: ::stevedore::PublishOptions,
        ) -> ::stevedore::Result<::stevedore::TaskHandle<#success>> {
            #module::apply_async(client, args, options).await
        }

        /// Builds the task's message without publishing it (for `Client::publish_many`).
        pub fn message(
            args: (#(#types,)*),
            options: &::stevedore::PublishOptions,
        ) -> ::stevedore::Result<::stevedore::Message> {
            #module::message(args, options)
        }

        /// This call as a workflow step (`Workflow::chain`, `group`, `chord`), not published.
        pub fn sig(args: (#(#types,)*)) -> ::stevedore::Signature {
            #module::sig(args)
        }

        #partial
    }
}

/// The task's arguments (not the context): their names and types.
fn arguments(task: &TaskDef) -> (Vec<&syn::Ident>, Vec<&syn::Type>) {
    task.body
        .params
        .iter()
        .filter_map(|p| match p {
            Param::Argument { ident, ty } => Some((ident, &**ty)),
            Param::Context => None,
        })
        .unzip()
}

/// The stub functions, the handler and the registration, written against `NAME`.
fn shared_items(task: &TaskDef) -> TokenStream {
    let (idents, types) = arguments(task);
    let success = task.body.success_type();
    let encodes: Vec<TokenStream> = (idents.iter().zip(&types))
        .map(|(ident, ty)| {
            let name = ident.to_string();
            quote_spanned! {ty.span()=>
                ::stevedore::__private::encode_arg::<#ty>(NAME, #name, &#ident)?
            }
        })
        .collect();
    let queue = match &task.options.queue {
        Some(q) => quote!(::core::option::Option::Some(#q)),
        None => quote!(::core::option::Option::None),
    };
    let options = task_options(task, &queue);
    let signatures = signature_items(&idents, &types, &encodes, &options);
    let handler = handler(task);
    let kind = if task.body.is_async {
        quote!(::stevedore::TaskKind::Async)
    } else {
        quote!(::stevedore::TaskKind::Blocking)
    };
    quote! {
        /// Publishes the task with these arguments and default options.
        pub async fn delay(
            client: &::stevedore::Client,
            #(#idents: #types),*
        ) -> ::stevedore::Result<::stevedore::TaskHandle<#success>> {
            apply_async(client, (#(#idents,)*), ::stevedore::PublishOptions::new()).await
        }

        /// Publishes the task with these arguments (a tuple) and options.
        pub async fn apply_async(
            client: &::stevedore::Client,
            args: (#(#types,)*),
            options: ::stevedore::PublishOptions,
        ) -> ::stevedore::Result<::stevedore::TaskHandle<#success>> {
            ::stevedore::__private::publish(client, message(args, &options)?).await
        }

        /// Builds the task's message without publishing it (for `Client::publish_many`).
        pub fn message(
            args: (#(#types,)*),
            options: &::stevedore::PublishOptions,
        ) -> ::stevedore::Result<::stevedore::Message> {
            let (#(#idents,)*) = args;
            let values = ::std::vec![#(#encodes),*];
            ::stevedore::__private::build_message(NAME, &#options, values, options)
        }

        #signatures

        #handler

        ::stevedore::__private::inventory::submit! {
            ::stevedore::TaskRegistration::new(
                NAME,
                #kind,
                #options,
                __stevedore_handler,
                ::core::concat!(::core::file!(), ":", ::core::line!()),
            )
        }
    }
}

/// `sig` (a call as a workflow step) and, for a task with arguments, `partial` (every
/// argument but the first, which the step before fills).
fn signature_items(
    idents: &[&syn::Ident],
    types: &[&syn::Type],
    encodes: &[TokenStream],
    options: &TokenStream,
) -> TokenStream {
    let sig = quote! {
        /// This call as a workflow step (`Workflow::chain`, `group`, `chord`), not published.
        pub fn sig(args: (#(#types,)*)) -> ::stevedore::Signature {
            let (#(#idents,)*) = args;
            let values = (|| ::stevedore::Result::Ok(::std::vec![#(#encodes),*]))();
            ::stevedore::__private::signature(NAME, #options, values)
        }
    };
    if idents.is_empty() {
        return sig;
    }
    let (rest_idents, rest_types, rest_encodes) = (&idents[1..], &types[1..], &encodes[1..]);
    quote! {
        #sig

        /// This task as a chain's next step: every argument but the first, which the result
        /// of the step before fills.
        pub fn partial(args: (#(#rest_types,)*)) -> ::stevedore::Signature {
            let (#(#rest_idents,)*) = args;
            let values = (|| ::stevedore::Result::Ok(::std::vec![#(#rest_encodes),*]))();
            ::stevedore::__private::signature(NAME, #options, values)
        }
    }
}

/// The task's `on_duplicate` policy as a path to its variant.
fn on_duplicate(task: &TaskDef) -> TokenStream {
    match &task.options.on_duplicate {
        Some(variant) => quote!(::stevedore::OnDuplicate::#variant),
        None => quote!(::stevedore::OnDuplicate::Parallel),
    }
}

/// The `TaskOptions` literal of the registration.
fn task_options(task: &TaskDef, queue: &TokenStream) -> TokenStream {
    let optional = |ms: Option<u64>| match ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let timeout = optional(task.options.timeout_ms);
    let hard_timeout = optional(task.options.hard_timeout_ms);
    let uses_context = task.body.params.iter().any(|p| matches!(p, Param::Context));
    let retries = match task.options.retries {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let backoff = optional(task.options.backoff_ms);
    let on_duplicate = on_duplicate(task);
    let max_backoff = optional(task.options.max_backoff_ms);
    let aliases = &task.options.aliases;
    let record = match &task.options.record {
        Some(variant) => quote!(::stevedore::RecordPolicy::#variant),
        None => quote!(::stevedore::RecordPolicy::All),
    };
    let placement = (task.options.placement)
        .expand(&task.body.params)
        .unwrap_or_default();
    quote! {
        ::stevedore::TaskOptions {
            default_queue: #queue,
            timeout_ms: #timeout,
            hard_timeout_ms: #hard_timeout,
            uses_context: #uses_context,
            retries: #retries,
            backoff_ms: #backoff,
            max_backoff_ms: #max_backoff,
            on_duplicate: #on_duplicate,
            aliases: &[#(#aliases),*],
            record: #record,
            #placement
        }
    }
}

/// The function the worker calls: decode arguments, run the body, encode the outcome.
fn handler(task: &TaskDef) -> TokenStream {
    let arity = task
        .body
        .params
        .iter()
        .filter(|p| matches!(p, Param::Argument { .. }))
        .count();
    let mut takes = Vec::new();
    let mut call_args = Vec::new();
    for (index, param) in task.body.params.iter().enumerate() {
        match param {
            Param::Argument { ident, ty } => {
                let name = ident.to_string();
                let var = format_ident!("__arg{index}");
                takes.push(quote_spanned! {ty.span()=>
                    let #var = __arguments.take::<#ty>(#name)?;
                });
                call_args.push(quote!(#var));
            }
            Param::Context => call_args.push(quote!(__context.clone())),
        }
    }
    let call = match &task.shape {
        Shape::Function { ident, .. } => quote!(super::#ident(#(#call_args),*)),
        Shape::Struct { self_ty, .. } => {
            quote!(<#self_ty as ::core::default::Default>::default().run(#(#call_args),*))
        }
    };
    let span = task
        .body
        .output
        .as_ref()
        .map_or_else(proc_macro2::Span::call_site, |t| t.span());
    let outcome = |value: TokenStream| {
        if task.body.returns_result {
            quote_spanned!(span=> ::stevedore::__private::IntoOutcome::into_outcome(#value))
        } else {
            quote_spanned!(span=> ::stevedore::__private::IntoOutcome::into_outcome(::stevedore::__private::Plain(#value)))
        }
    };
    let run = if task.body.is_async {
        outcome(quote!(#call.await))
    } else {
        let body = outcome(call);
        quote! {
            ::stevedore::__private::spawn_blocking(move || #body)
                .await
                .map_err(::stevedore::__private::join_error)?
        }
    };
    quote! {
        #[doc(hidden)]
        fn __stevedore_handler(
            invocation: ::stevedore::Invocation,
        ) -> ::stevedore::__private::BoxFuture<
            'static,
            ::core::result::Result<::stevedore::__private::Value, ::stevedore::TaskError>,
        > {
            ::std::boxed::Box::pin(async move {
                let ::stevedore::Invocation { args, kwargs, context: __context } = invocation;
                let mut __arguments =
                    ::stevedore::__private::Arguments::new(NAME, #arity, args, kwargs)?;
                #(#takes)*
                __arguments.finish()?;
                #run
            })
        }
    }
}
