//! What #[task] generates, used as a user would (no Redis needed), and its compile-fail cases:
//! misuse of #[task] gets one readable error (tests/ui). One test target for the crate: each
//! target is a binary of its own to link (docs/decisions.md, "The test suite").

use stevedore::{task, PublishOptions, TaskContext, TaskError};

#[task(queue = "math")]
async fn add(a: i64, b: i64) -> Result<i64, TaskError> {
    Ok(a + b)
}

#[task(name = "custom.name")]
fn shout(text: String) -> String {
    text.to_uppercase()
}

#[task(timeout = "2s", hard_timeout = "3s")]
async fn with_context(ctx: TaskContext, n: u32) -> u32 {
    n + ctx.attempt()
}

#[derive(Default)]
struct Counter;

#[task]
impl Counter {
    fn run(&self, items: Vec<u8>) -> usize {
        items.len()
    }
}

#[tokio::test]
async fn the_function_stays_callable_as_written() {
    assert_eq!(add(1, 2).await.unwrap(), 3);
    assert_eq!(shout("hi".into()), "HI");
    assert_eq!(Counter.run(vec![1, 2]), 2);
}

#[test]
fn names_default_to_the_module_path_unless_given() {
    assert_eq!(add::NAME, "expand::add");
    assert_eq!(shout::NAME, "custom.name");
    assert_eq!(with_context::NAME, "expand::with_context");
    assert_eq!(Counter::TASK_NAME, "expand::Counter");
}

#[test]
fn messages_carry_named_arguments_and_the_default_queue() {
    let m = add::message((1, 2), &PublishOptions::new()).unwrap();
    assert_eq!(m.task, "expand::add");
    assert_eq!(m.queue, "math");
    assert_eq!(m.args, vec![1.into(), 2.into()]);
    let m = add::message((1, 2), &PublishOptions::new().node("n1")).unwrap();
    assert_eq!(m.queue, "node:n1");
    let m = with_context::message((5,), &PublishOptions::new()).unwrap();
    assert_eq!(m.args, vec![5.into()], "the context is not an argument");
    let m = Counter::message((vec![1],), &PublishOptions::new().broadcast()).unwrap();
    assert_eq!(m.queue, "broadcast");
}

#[test]
fn every_task_is_registered_at_link_time() {
    let names: Vec<_> = stevedore::registered_tasks().map(|t| t.name).collect();
    for name in [
        "expand::add",
        "custom.name",
        "expand::with_context",
        "expand::Counter",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    let add = stevedore::registered_tasks()
        .find(|t| t.name == "expand::add")
        .unwrap();
    assert_eq!(add.options.default_queue, Some("math"));
    assert!(!add.options.uses_context);
    assert_eq!(add.kind, stevedore::TaskKind::Async);
    let with_context = stevedore::registered_tasks()
        .find(|t| t.name == "expand::with_context")
        .unwrap();
    assert!(with_context.options.uses_context);
    assert_eq!(with_context.options.timeout_ms, Some(2000));
    assert_eq!(with_context.options.hard_timeout_ms, Some(3000));
    let shout = stevedore::registered_tasks()
        .find(|t| t.name == "custom.name")
        .unwrap();
    assert_eq!(shout.kind, stevedore::TaskKind::Blocking);
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Size {
    width: u32,
    height: u32,
}

#[task]
fn area(size: Size) -> Size {
    size
}

#[test]
fn struct_arguments_travel_as_maps_with_field_names() {
    let m = area::message(
        (Size {
            width: 2,
            height: 3,
        },),
        &PublishOptions::new(),
    )
    .unwrap();
    let rmpv::Value::Map(fields) = &m.args[0] else {
        panic!("a struct argument is a map: {:?}", m.args[0]);
    };
    assert_eq!(fields[0].0.as_str(), Some("width"));
    use stevedore::__private::TaskValue;
    assert_eq!(
        Size::from_value(m.args[0].clone()).unwrap(),
        Size {
            width: 2,
            height: 3
        }
    );
}

// Runs cargo: among the first under nextest, being among the longest on a clean clone
// (.config/nextest.toml).
#[test]
fn misuse_is_refused_with_a_readable_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
