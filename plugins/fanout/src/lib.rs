//! Fan out, join, aggregate: a durable workflow over child runs.
//!
//! - `{"items": [3, 4, …]}` (or `{"count": N}` for the items 0..N): one
//!   child run of this plugin per item, spawned as one step, joined as one
//!   step; the output sums the children's squares:
//!   `{"children": N, "succeeded": N, "sum": …}`. Children of another
//!   plugin: `"plugin": "name"`, with input `"child_input"` (instead of
//!   the item). `"fail": [i, …]` makes those items' children fail;
//!   `"detach": [i, …]` spawns those detached (not cancelled with this run).
//! - `{"item": x}`: a child: returns x² (fails if `"fail": true`).
//! - `{"nest": true}`: spawns one child like itself and joins it, until the
//!   host refuses to nest deeper: the output is how deep it went.
use serde_json::{Value, json};
use taskhost_sdk::{Child, Context, Error, Result, export_task};

fn fanout(ctx: &Context, input: Value) -> Result<Value> {
    let plugin = input["plugin"].as_str().unwrap_or("fanout");
    if let Some(item) = input.get("item") {
        if input["fail"] == json!(true) {
            return Err(Error::fatal(format!("item {item} fails, as asked")));
        }
        let x = item.as_i64().unwrap_or(0);
        return Ok(json!(x * x));
    }
    if input["nest"] == json!(true) {
        let child = Child::new(plugin, json!({ "nest": true, "plugin": plugin }));
        return match ctx.spawn("deeper", &[child]) {
            Err(refused) => Ok(json!({ "depth": 0, "refused": refused.to_string() })),
            Ok(ids) => {
                let below = ctx.join("below", &ids)?;
                let depth = below[0].output["depth"].as_u64().unwrap_or(0) + 1;
                Ok(json!({ "depth": depth, "refused": below[0].output["refused"] }))
            }
        };
    }
    let items: Vec<Value> = match input.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => (0..input["count"].as_u64().unwrap_or(0))
            .map(|i| json!(i))
            .collect(),
    };
    let listed = |key: &str, i: usize| {
        input[key]
            .as_array()
            .is_some_and(|list| list.contains(&json!(i)))
    };
    let children: Vec<Child> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let child_input = match input.get("child_input") {
                Some(given) => given.clone(),
                None => json!({ "item": item, "fail": listed("fail", i) }),
            };
            let child = Child::new(plugin, child_input);
            if listed("detach", i) {
                child.detach()
            } else {
                child
            }
        })
        .collect();
    let ids = ctx.spawn("fan-out", &children)?;
    let outcomes = ctx.join("join", &ids)?;
    let succeeded = outcomes.iter().filter(|o| o.succeeded()).count();
    let sum: i64 = outcomes.iter().filter_map(|o| o.output.as_i64()).sum();
    Ok(json!({ "children": ids.len(), "succeeded": succeeded, "sum": sum }))
}

export_task!(fanout);
