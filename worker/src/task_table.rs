//! The tasks this worker can run, from the link-time registry; duplicate names are refused.

use std::collections::HashMap;

use stevedore::TaskRegistration;

/// Task names to their registrations.
#[derive(Debug)]
pub struct TaskTable {
    tasks: HashMap<&'static str, &'static TaskRegistration>,
}

/// Two tasks registered under one name.
#[derive(Debug, thiserror::Error)]
#[error("task name `{name}` is registered twice, at {first} and at {second}; give one of them #[task(name = \"...\")]")]
pub struct DuplicateTask {
    name: &'static str,
    first: &'static str,
    second: &'static str,
}

impl TaskTable {
    /// Every task linked into this binary.
    pub fn linked() -> Result<Self, DuplicateTask> {
        Self::from_registrations(stevedore::registered_tasks())
    }

    fn from_registrations(
        registrations: impl IntoIterator<Item = &'static TaskRegistration>,
    ) -> Result<Self, DuplicateTask> {
        let mut tasks: HashMap<&'static str, &'static TaskRegistration> = HashMap::new();
        for registration in registrations {
            let names = std::iter::once(registration.name)
                .chain(registration.options.aliases.iter().copied());
            for name in names {
                if let Some(first) = tasks.insert(name, registration) {
                    let (first, second) = ordered(first.location, registration.location);
                    return Err(DuplicateTask {
                        name,
                        first,
                        second,
                    });
                }
            }
        }
        Ok(Self { tasks })
    }

    /// The task registered as `name`.
    pub fn get(&self, name: &str) -> Option<&'static TaskRegistration> {
        self.tasks.get(name).copied()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.tasks.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

fn ordered(a: &'static str, b: &'static str) -> (&'static str, &'static str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stevedore::{TaskError, TaskKind, TaskOptions};

    fn noop(
        _: stevedore::Invocation,
    ) -> stevedore::__private::BoxFuture<'static, Result<rmpv::Value, TaskError>> {
        Box::pin(async { Ok(rmpv::Value::Nil) })
    }

    static A: TaskRegistration =
        TaskRegistration::new("dup", TaskKind::Async, TaskOptions::new(), noop, "a.rs:1");
    static B: TaskRegistration =
        TaskRegistration::new("dup", TaskKind::Async, TaskOptions::new(), noop, "b.rs:2");

    #[test]
    fn duplicate_names_are_refused_naming_both_places() {
        let err = TaskTable::from_registrations([&A, &B])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`dup`") && err.contains("a.rs:1") && err.contains("b.rs:2"),
            "{err}"
        );
    }

    #[test]
    fn builtins_are_linked() {
        let table = TaskTable::linked().unwrap();
        for name in [
            "stevedore.noop",
            "stevedore.echo",
            "stevedore.sleep",
            "stevedore.fail",
        ] {
            assert!(table.get(name).is_some(), "{name} missing");
        }
    }
}
