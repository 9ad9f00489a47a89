//! Converting between JSON (the shell's side) and MessagePack values (times print through
//! `stevedore::admin::format`).

use anyhow::Context as _;

/// A JSON value as a MessagePack value (integers stay integers, `1.0` stays a float).
pub fn json_to_value(json: &serde_json::Value) -> anyhow::Result<rmpv::Value> {
    rmpv::ext::to_value(json).context("cannot convert a JSON argument to MessagePack")
}

/// `--args JSON`: a JSON array of positional arguments, as MessagePack values.
pub fn parse_args(json: &str) -> anyhow::Result<Vec<rmpv::Value>> {
    let value: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("--args is not JSON: `{json}`"))?;
    let serde_json::Value::Array(items) = value else {
        anyhow::bail!("--args must be a JSON array, e.g. --args '[1, \"two\"]'");
    };
    items.iter().map(json_to_value).collect()
}

/// `--kwargs JSON`: a JSON object of keyword arguments, as MessagePack values.
pub fn parse_kwargs(json: &str) -> anyhow::Result<std::collections::BTreeMap<String, rmpv::Value>> {
    let value: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("--kwargs is not JSON: `{json}`"))?;
    let serde_json::Value::Object(items) = value else {
        anyhow::bail!("--kwargs must be a JSON object, e.g. --kwargs '{{\"n\": 1}}'");
    };
    items
        .iter()
        .map(|(k, v)| Ok((k.clone(), json_to_value(v)?)))
        .collect()
}

/// A MessagePack value as JSON text; values JSON cannot hold (binary, non-string map keys)
/// are shown in their debug form.
pub fn value_to_json(value: &rmpv::Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("{value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_integers_stay_integers() {
        let v = json_to_value(&serde_json::json!([1, 1.5, "x", {"a": null}])).unwrap();
        assert_eq!(value_to_json(&v), r#"[1,1.5,"x",{"a":null}]"#);
    }
}
