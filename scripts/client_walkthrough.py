"""The README walkthrough through a client generated from /openapi.json.

Run by scripts/client-walkthrough.sh, which generates `taskhost_client` with
openapi-python-client and puts it on PYTHONPATH. Arguments: BASE_URL TOKEN WASM.
"""
import sys
import time

from taskhost_client import AuthenticatedClient
from taskhost_client.api.executions import executions_get as get_execution
from taskhost_client.api.executions import executions_list as list_executions
from taskhost_client.api.executions import executions_submit as submit
from taskhost_client.api.plugins import plugins_list as list_plugins
from taskhost_client.api.plugins import plugins_upload as upload
from taskhost_client.api.schedules import schedules_create as create_schedule
from taskhost_client.api.schedules import schedules_pause as pause
from taskhost_client.models import Execution, NewExecution, NewSchedule, PluginRecord
from taskhost_client.types import File

base, token, wasm = sys.argv[1:4]
client = AuthenticatedClient(base_url=base, token=token)

# Upload the hello plugin.
with open(wasm, "rb") as f:
    plugin = upload.sync(
        client=client,
        body=File(payload=f, file_name="hello.wasm", mime_type="application/octet-stream"),
        name="hello",
        version="1.0.0",
    )
assert isinstance(plugin, PluginRecord), plugin
listed = list_plugins.sync(client=client)
assert any(p.id == plugin.id for p in listed.items), listed

# Run it once, ad hoc, and wait for the result.
run = submit.sync(
    client=client,
    body=NewExecution.from_dict(
        {"plugin_id": plugin.id, "input": {"name": "Ada"}, "wait": "20s"}
    ),
)
assert isinstance(run, Execution), run
assert run.status.value == "succeeded", run
assert run.outcome.output == "Hello, Ada!", run.outcome
again = get_execution.sync(run.id, client=client)
assert again.id == run.id and again.status.value == "succeeded"

# Schedule it every second; a fire runs; pause it.
schedule = create_schedule.sync(
    client=client,
    body=NewSchedule.from_dict(
        {
            "name": "every-second",
            "plugin_id": plugin.id,
            "trigger": {"kind": "interval", "every": "1s"},
            "input": {"name": "cron"},
        }
    ),
)
assert schedule.id, schedule
deadline = time.time() + 30
while True:
    page = list_executions.sync(client=client, schedule_id=schedule.id, status="succeeded")
    if page.items:
        break
    assert time.time() < deadline, "no scheduled run succeeded in 30 s"
    time.sleep(0.2)
paused = pause.sync(schedule.id, client=client)
assert paused.paused, paused
print("client walkthrough: upload, run, schedule, pause: ok")
