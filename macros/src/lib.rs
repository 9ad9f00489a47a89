//! The `#[task]` attribute of stevedore. Use it through `stevedore::task`; it generates code
//! that calls into `stevedore`, and holds no runtime logic of its own.
//!
//! Parsing and checking live in `parse`, code generation in `expand`. On an error the item is
//! emitted unchanged beside one `compile_error!`, so the user sees one message, not a cascade.

mod expand;
mod parse;
mod placement;

use proc_macro::TokenStream;

/// Makes a function, or the `run` method of a struct, a stevedore task.
///
/// On an `async fn` or a plain `fn`, the function stays callable as it is, and a module of the
/// same name is generated beside it with the stub: `add::delay(&client, 1, 2)`,
/// `add::apply_async(&client, (1, 2), options)`, `add::message((1, 2), &options)` and
/// `add::NAME`. On an `impl` block holding `fn run(&self, ...)`, the same functions are
/// generated as associated functions of the type (`Adder::delay(...)`); the worker builds the
/// value with `Default::default()` for each run.
///
/// Options (a call's `PublishOptions` win over each):
///
/// | option | meaning |
/// |---|---|
/// | `name = "billing.charge"` | the task's name (default: module path and function or type name) |
/// | `queue = "billing"` | the stub's default queue |
/// | `timeout = "30s"` | soft time limit of one run (`ms`, `s`, `m`, `h`) |
/// | `hard_timeout = "40s"` | hard time limit: the run is aborted |
/// | `retries = 5` | retries after a failed attempt |
/// | `backoff = "1s"` | first retry delay, doubling each retry |
/// | `max_backoff = "10m"` | longest retry delay |
/// | `on_duplicate = "discard"` | `parallel`, `discard`, `serial` or `queue_one` |
/// | `aliases = ["old.name"]` | older names messages may still carry (they run this task) |
/// | `record = "failures"` | which runs leave a record: `all`, `failures` or `none` |
/// | `impact = 4` | units of a node's capacity one run takes (default 1) |
/// | `exclusive` | the run has its node to itself (the node drains first) |
/// | `rate_limit = "100/s"`, `burst = 10` | the task's own cluster-wide rate (`/s`, `/m`, `/h`) |
/// | `concurrency = 5` | the task's own cluster-wide limit on runs at once |
/// | `limit = "api"` | the named limit its runs start under (`stevedore limit set`) |
/// | `limit_key = "customer"` | one bucket of the limit per value of this argument |
///
/// A parameter of type `TaskContext` receives the run's context instead of an argument.
///
/// The item must sit at module level (not inside a function body): the stub module refers to
/// it through `super::`.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item2: proc_macro2::TokenStream = item.clone().into();
    match parse::parse(attr.into(), item2.clone()) {
        Ok(task) => expand::expand(&task).into(),
        Err(error) => {
            let error = error.to_compile_error();
            quote::quote!(#error #item2).into()
        }
    }
}
