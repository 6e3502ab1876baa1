#!/usr/bin/env node
// Validates KQL with Microsoft's own parser (Kusto.Language, npm @kusto/language-service-next)
// against the emulator's table schemas. One long-lived process, driven by
// emulator/loganalytics/kusto_parser.py over JSON lines:
//
//   stdin : {"id": 1, "query": "ContainerRegistryLoginEvents | take 1"}
//   stdout: {"id": 1, "diagnostics": [{code, severity, category, message, start, length,
//            line, column, syntax}], "ms": 1.2}
//
// Positions are in Unicode code points (Python's string indexing), not the UTF-16 units
// Kusto.Language counts in. The first line written is {"ready": true, ...} once the library is
// loaded and warmed up (the first analysis takes ~0.5 s; later ones a few ms), or
// {"fatal": "..."} before exiting when it cannot start.
//
// Usage: node kusto_check.js --schemas schemas.json --kusto-dir <node_modules>/@kusto/language-service-next
"use strict";

const fs = require("fs");
const path = require("path");
const readline = require("readline");

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function arg(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : null;
}

function fatal(message) {
  send({ fatal: message });
  process.exit(1);
}

const schemasPath = arg("--schemas") || path.join(__dirname, "schemas.json");
const kustoDirArg = arg("--kusto-dir");
const kustoDir = kustoDirArg && path.resolve(kustoDirArg);
if (!kustoDirArg) fatal("--kusto-dir is required");

let K;
const t0 = Date.now();
try {
  // Bridge.NET output: bridge.js defines the global `Bridge` runtime the library registers into.
  require(path.join(kustoDir, "bridge.min.js"));
  require(path.join(kustoDir, "Kusto.Language.Bridge.min.js"));
  K = global.Kusto.Language;
} catch (e) {
  fatal(`cannot load Kusto.Language from ${kustoDir}: ${e && e.message}`);
}

let globals;
let tableNames;
try {
  const doc = JSON.parse(fs.readFileSync(schemasPath, "utf8"));
  tableNames = Object.keys(doc.tables);
  const tables = tableNames.map((name) => {
    const schema = "(" + doc.tables[name].map((c) => `${c.name}:${c.type}`).join(", ") + ")";
    return new K.Symbols.TableSymbol.$ctor7(name, schema, null);
  });
  const db = new K.Symbols.DatabaseSymbol.$ctor2("LogAnalytics", null, tables);
  globals = K.GlobalState.Default.WithDatabase(db);
} catch (e) {
  fatal(`cannot build table symbols from ${schemasPath}: ${e && e.message}`);
}

function keyOf(d) {
  return `${d.Code}@${d.Start}:${d.Length}`;
}

function list(items) {
  const out = [];
  const n = items ? items.Count : 0;
  for (let i = 0; i < n; i++) out.push(items.getItem(i));
  return out;
}

function check(query) {
  const analyzed = list(K.KustoCode.ParseAndAnalyze(query, globals).GetDiagnostics());
  if (analyzed.length === 0) return [];
  // Diagnostics the parser alone reports are syntax errors; the rest come from binding.
  const syntax = new Set(list(K.KustoCode.Parse(query, globals).GetDiagnostics()).map(keyOf));
  return analyzed.map((d) => {
    const before = Array.from(query.slice(0, d.Start));
    const start = before.length;
    const length = Array.from(query.slice(d.Start, d.Start + d.Length)).length;
    let line = 1;
    let column = 1;
    for (const ch of before) {
      if (ch === "\n") {
        line += 1;
        column = 1;
      } else {
        column += 1;
      }
    }
    return {
      code: d.Code,
      severity: d.Severity,
      category: d.Category,
      message: d.Message,
      start,
      length,
      line,
      column,
      syntax: syntax.has(keyOf(d)),
    };
  });
}

// Warm-up: the first analysis JIT-compiles most of the binder.
for (const name of tableNames) check(`${name} | where TimeGenerated > ago(1d) | summarize count() by bin(TimeGenerated, 1h)`);
send({ ready: true, tables: tableNames, load_ms: Date.now() - t0 });

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    send({ id: null, error: `not JSON: ${e.message}` });
    return;
  }
  const started = process.hrtime.bigint();
  try {
    if (typeof req.query !== "string") throw new Error("'query' must be a string");
    const diagnostics = check(req.query);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    send({ id: req.id, diagnostics, ms });
  } catch (e) {
    send({ id: req.id, error: String((e && e.message) || e) });
  }
});
rl.on("close", () => process.exit(0));
