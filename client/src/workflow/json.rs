//! The JSON description of a workflow (docs/protocol.md "Workflows"), as `stevedore workflow
//! submit` reads it.
//!
//! A step is `{"task": NAME, "args": [...], "kwargs": {...}, "immutable": false, "on_success":
//! STEP, "on_failure": STEP, "always": STEP}` plus publish options (`queue`, `node`, `id`,
//! `retries`, `timeout_ms`, `hard_timeout_ms`, `backoff_ms`, `max_backoff_ms`, `expires_ms`,
//! `impact`, `exclusive`, `limit`, `headers`); `{"chain": [STEP, ...]}`, `{"group": [STEP,
//! ...]}` and `{"chord": {"group": [STEP, ...], "callback": STEP}}` are steps too (with links)
//! and nest freely. Anything else is refused with the path of the part that is wrong.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{Signature, Workflow};
use crate::{Error, PublishOptions, Result};

const LINKS: [&str; 3] = ["on_success", "on_failure", "always"];
const STEP_KEYS: [&str; 17] = [
    "task",
    "args",
    "kwargs",
    "immutable",
    "queue",
    "node",
    "id",
    "retries",
    "timeout_ms",
    "hard_timeout_ms",
    "backoff_ms",
    "max_backoff_ms",
    "expires_ms",
    "impact",
    "exclusive",
    "limit",
    "headers",
];

/// The workflow `value` describes.
pub(super) fn from_json(value: &Value) -> Result<Workflow> {
    part(value, "workflow")
}

/// The longest duration a step may give, in ms: 100 years, the command line's bound.
const LONGEST_MS: u64 = 100 * 365 * 86_400_000;

/// Headers a step may not carry: a skipped duplicate would never join, and the workflow
/// header is stevedore's own.
const RESERVED_HEADERS: [&str; 3] = ["on_duplicate", "dedup", "workflow"];

fn bad(path: &str, what: impl std::fmt::Display) -> Error {
    Error::InvalidWorkflow(format!("{path}: {what}"))
}

fn part(value: &Value, path: &str) -> Result<Workflow> {
    let Value::Object(object) = value else {
        return Err(bad(path, "a step is a JSON object"));
    };
    let shape = ["task", "chain", "group", "chord"]
        .into_iter()
        .filter(|k| object.contains_key(*k))
        .collect::<Vec<_>>();
    let mut workflow = match shape.as_slice() {
        ["task"] => Workflow::from(step(object, path)?),
        ["chain"] => Workflow::chain(list(object, "chain", path)?),
        ["group"] => Workflow::group(list(object, "group", path)?),
        ["chord"] => chord(&object["chord"], &format!("{path}.chord"))?,
        _ => {
            return Err(bad(
                path,
                "give exactly one of `task`, `chain`, `group` and `chord`",
            ))
        }
    };
    if shape != ["task"] {
        if let Some(key) = object
            .keys()
            .find(|k| *k != shape[0] && !LINKS.contains(&k.as_str()))
        {
            return Err(bad(
                path,
                format!("unknown key `{key}` beside `{}`", shape[0]),
            ));
        }
    }
    for link in LINKS {
        if let Some(next) = object.get(link) {
            let next = part(next, &format!("{path}.{link}"))?;
            workflow = match link {
                "on_success" => workflow.on_success(next),
                "on_failure" => workflow.on_failure(next),
                _ => workflow.always(next),
            };
        }
    }
    Ok(workflow)
}

fn list(object: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<Workflow>> {
    let Some(Value::Array(items)) = object.get(key) else {
        return Err(bad(path, format!("`{key}` is a list of steps")));
    };
    (items.iter().enumerate())
        .map(|(k, item)| part(item, &format!("{path}.{key}[{k}]")))
        .collect()
}

fn chord(value: &Value, path: &str) -> Result<Workflow> {
    let Value::Object(object) = value else {
        return Err(bad(
            path,
            "a chord is {\"group\": [...], \"callback\": STEP}",
        ));
    };
    if let Some(key) = object.keys().find(|k| *k != "group" && *k != "callback") {
        return Err(bad(path, format!("unknown key `{key}` in a chord")));
    }
    let members = list(object, "group", path)?;
    let callback = object
        .get("callback")
        .ok_or_else(|| bad(path, "a chord needs a `callback` step"))?;
    let callback = part(callback, &format!("{path}.callback"))?;
    Ok(Workflow::chord(members, callback))
}

fn step(object: &Map<String, Value>, path: &str) -> Result<Signature> {
    let known = |k: &String| STEP_KEYS.contains(&k.as_str()) || LINKS.contains(&k.as_str());
    if let Some(key) = object.keys().find(|k| !known(k)) {
        return Err(bad(path, format!("unknown key `{key}` in a step")));
    }
    let task = (object.get("task").and_then(Value::as_str))
        .ok_or_else(|| bad(path, "`task` is the task's name (a string)"))?;
    let to_value = |v: &Value| {
        rmpv::ext::to_value(v).map_err(|e| bad(path, format!("an argument cannot be sent: {e}")))
    };
    let args = match object.get("args") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(to_value).collect::<Result<_>>()?,
        Some(_) => return Err(bad(path, "`args` is a JSON array")),
    };
    let kwargs = match object.get("kwargs") {
        None => BTreeMap::new(),
        Some(Value::Object(items)) => (items.iter())
            .map(|(k, v)| Ok((k.clone(), to_value(v)?)))
            .collect::<Result<_>>()?,
        Some(_) => return Err(bad(path, "`kwargs` is a JSON object")),
    };
    let mut signature = Signature::new(task, args, kwargs).options(options(object, path)?);
    match object.get("immutable") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => signature = signature.immutable(),
        Some(_) => return Err(bad(path, "`immutable` is true or false")),
    }
    Ok(signature)
}

fn options(object: &Map<String, Value>, path: &str) -> Result<PublishOptions> {
    let mut options = PublishOptions::new();
    let text = |key: &str| -> Result<Option<&str>> {
        match object.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(bad(path, format!("`{key}` is a string"))),
        }
    };
    let number = |key: &str| -> Result<Option<u64>> {
        match object.get(key) {
            None => Ok(None),
            Some(v) => (v.as_u64().map(Some))
                .ok_or_else(|| bad(path, format!("`{key}` is a whole number >= 0"))),
        }
    };
    // Durations as the command line takes them: at most 100 years.
    let ms = |key: &str| match number(key)? {
        Some(ms) if ms > LONGEST_MS => Err(bad(path, format!("`{key}` is longer than 100 years"))),
        ms => Ok(ms.map(Duration::from_millis)),
    };
    let small = |key: &str| -> Result<Option<u32>> {
        (number(key)?.map(u32::try_from).transpose())
            .map_err(|_| bad(path, format!("`{key}` is too large")))
    };
    if let Some(queue) = text("queue")? {
        options = options.queue(queue);
    }
    if let Some(node) = text("node")? {
        options = options.node(node);
    }
    if let Some(id) = text("id")? {
        options = options.id(id);
    }
    if let Some(limit) = text("limit")? {
        options = options.limit(limit);
    }
    if let Some(retries) = small("retries")? {
        options = options.retries(retries);
    }
    if let Some(impact) = small("impact")? {
        options = options.impact(impact);
    }
    if let Some(timeout) = ms("timeout_ms")? {
        options = options.timeout(timeout);
    }
    if let Some(timeout) = ms("hard_timeout_ms")? {
        options = options.hard_timeout(timeout);
    }
    if let Some(first) = ms("backoff_ms")? {
        let max = ms("max_backoff_ms")?.unwrap_or(first.saturating_mul(64));
        options = options.backoff(first, max);
    }
    if let Some(after) = ms("expires_ms")? {
        options = options.expires(after);
    }
    match object.get("exclusive") {
        None => {}
        Some(Value::Bool(b)) => options = options.exclusive(*b),
        Some(_) => return Err(bad(path, "`exclusive` is true or false")),
    }
    match object.get("headers") {
        None => {}
        Some(Value::Object(headers)) => {
            for (name, value) in headers {
                let value = value
                    .as_str()
                    .ok_or_else(|| bad(path, "header values are strings"))?;
                if RESERVED_HEADERS.contains(&name.as_str()) {
                    return Err(bad(path, format!("header `{name}` is not allowed in a workflow step (on_duplicate would skip a step that must join; `workflow` is set by stevedore)")));
                }
                options = options.header(name, value);
            }
        }
        Some(_) => return Err(bad(path, "`headers` is an object of strings")),
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_descriptions_with_links_are_read() {
        let value = json!({"chain": [
            {"group": [{"task": "a", "args": [1]}, {"chain": [{"task": "b"}, {"task": "c"}]}]},
            {"chord": {"group": [{"task": "d"}], "callback": {"task": "e", "immutable": true}}},
        ], "on_failure": {"task": "h", "queue": "alerts"}});
        let workflow = from_json(&value).unwrap();
        assert!(workflow.on_failure.is_some());
    }

    #[test]
    fn a_wrong_part_is_named_by_its_path() {
        let cases = [
            (json!({"chain": [{"task": "a"}, {"tsak": "b"}]}),
             "invalid workflow: workflow.chain[1]: give exactly one of `task`, `chain`, `group` and `chord`"),
            (json!({"task": "a", "retries": -1}),
             "invalid workflow: workflow: `retries` is a whole number >= 0"),
            (json!({"task": "a", "queu": "x"}),
             "invalid workflow: workflow: unknown key `queu` in a step"),
            (json!({"chord": {"group": [{"task": "a"}]}}),
             "invalid workflow: workflow.chord: a chord needs a `callback` step"),
            (json!([1]), "invalid workflow: workflow: a step is a JSON object"),
            (json!({"chain": [{"task": "a"}, {"task": "b", "headers": {"on_duplicate": "discard"}}]}),
             "invalid workflow: workflow.chain[1]: header `on_duplicate` is not allowed in a workflow step (on_duplicate would skip a step that must join; `workflow` is set by stevedore)"),
            (json!({"task": "a", "backoff_ms": u64::MAX}),
             "invalid workflow: workflow: `backoff_ms` is longer than 100 years"),
            (json!({"task": "a", "expires_ms": u64::MAX}),
             "invalid workflow: workflow: `expires_ms` is longer than 100 years"),
        ];
        for (value, expected) in cases {
            let error = from_json(&value).unwrap_err().to_string();
            assert_eq!(error, expected);
        }
    }
}
