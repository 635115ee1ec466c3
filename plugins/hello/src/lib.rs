use taskhost_sdk::{Context, Result, export_task};

#[derive(serde::Deserialize)]
struct Input {
    name: String,
}

fn hello(ctx: &Context, input: Input) -> Result<String> {
    ctx.info(&format!("greeting {}", input.name));
    Ok(format!("Hello, {}!", input.name))
}

export_task!(hello);
