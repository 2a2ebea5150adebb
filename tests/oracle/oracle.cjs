// The official @objectstack/spec 16.1.0 parser as a line-oriented oracle for the Python tests.
// stdin: one JSON document per line, {"kind": "config" | "result", "data": ...}
// stdout: one line per input, {"ok": true, "data": parsed} or {"ok": false, "issues": [...]}
"use strict";
const { DataSyncConfigSchema, SyncExecutionResultSchema } = require("@objectstack/spec/automation");
const readline = require("node:readline");

const schemas = { config: DataSyncConfigSchema, result: SyncExecutionResultSchema };
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const { kind, data } = JSON.parse(line);
  const r = schemas[kind].safeParse(data);
  const out = r.success
    ? { ok: true, data: r.data }
    : { ok: false, issues: r.error.issues.map((i) => ({ path: i.path, message: i.message })) };
  process.stdout.write(JSON.stringify(out) + "\n");
});
