"""Greets a name from JSON input: the Python SDK's hello world (the same
input, output and log line as plugins/hello)."""
from dataclasses import dataclass

from taskhost_sdk import task


@dataclass
class Input:
    name: str


@task
def hello(ctx, input: Input) -> str:
    ctx.info(f"greeting {input.name}")
    return f"Hello, {input.name}!"
