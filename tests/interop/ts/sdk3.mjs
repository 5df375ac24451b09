// The official @trigger.dev/sdk 3.3.17 (installed as "sdk3") against a Triggerfish server:
// the calls a 3.x app makes from outside a task. Run by tests/interop/test_official_sdk.py.
import assert from "node:assert/strict";
import { configure, envvars, runs, tasks } from "sdk3/v3";

configure({ baseURL: process.env.TRIGGER_API_URL, secretKey: process.env.TRIGGER_SECRET_KEY });
const ref = process.env.PROJECT_REF;

async function step(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (error) {
    console.error(`FAILED ${name}:`, error);
    process.exit(1);
  }
}

let handle;
await step("trigger a Python task and read its output", async () => {
  handle = await tasks.trigger("hello", { who: "3.x" }, { tags: ["interop-v3"] });
  const run = await runs.poll(handle.id, { pollIntervalMs: 50 });
  assert.equal(run.status, "COMPLETED");
  assert.equal(run.output.message, "Hello 3.x");
});

await step("retrieve, attempts included", async () => {
  const run = await runs.retrieve(handle.id);
  assert.equal(run.isSuccess, true);
  assert.equal(run.attempts.length, 1);
  assert.ok(!Number.isNaN(run.attempts[0].updatedAt.getTime()));
  assert.equal(run.attempts[0].status, "COMPLETED");
});

await step("list", async () => {
  const page = await runs.list({ tag: "interop-v3" });
  assert.ok(page.data.some((r) => r.id === handle.id));
});

await step("replay, then retrieve the replay", async () => {
  const replay = await runs.replay(handle.id);
  const run = await runs.poll(replay.id, { pollIntervalMs: 50 });
  assert.equal(run.triggerFunction, "trigger");
  assert.equal(run.output.message, "Hello 3.x");
});

await step("cancel", async () => {
  const delayed = await tasks.trigger("sync-hello", {}, { delay: "1h" });
  await runs.cancel(delayed.id);
  assert.equal((await runs.retrieve(delayed.id)).status, "CANCELED");
});

await step("environment variables", async () => {
  await envvars.create(ref, "dev", { name: "V3_VAR", value: "three" });
  assert.equal((await envvars.retrieve(ref, "dev", "V3_VAR")).value, "three");
  assert.ok((await envvars.list(ref, "dev")).some((v) => v.name === "V3_VAR"));
  await envvars.del(ref, "dev", "V3_VAR");
});
