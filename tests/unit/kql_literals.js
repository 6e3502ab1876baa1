#!/usr/bin/env node
// Test helper for tests/unit/test_kql.py: lexes KQL with Microsoft's own parser
// (Kusto.Language, npm @kusto/language-service-next) and reports, per query, the kinds of all
// tokens and the decoded value of every string literal token.
//
//   stdin : a JSON array of query texts
//   stdout: a JSON array of {"kinds": [int...], "literals": [string...], "errors": [string...]}
//
// Usage: node kql_literals.js <node_modules>/@kusto/language-service-next
"use strict";

const path = require("path");
const kustoDir = path.resolve(process.argv[2]);
require(path.join(kustoDir, "bridge.min.js"));
require(path.join(kustoDir, "Kusto.Language.Bridge.min.js"));
const K = global.Kusto.Language;

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const out = JSON.parse(input).map((query) => {
    const code = K.KustoCode.Parse(query);
    const kinds = [];
    const literals = [];
    for (let tok = code.Syntax.GetFirstToken(); tok; tok = tok.GetNextToken()) {
      kinds.push(tok.Kind);
      if (tok.Kind === K.Syntax.SyntaxKind.StringLiteralToken) {
        literals.push(K.KustoFacts.GetStringLiteralValue(tok.Text));
      }
    }
    const diagnostics = code.GetDiagnostics();
    const errors = [];
    for (let i = 0; i < diagnostics.Count; i++) errors.push(diagnostics.getItem(i).Message);
    return { kinds, literals, errors };
  });
  // Escape everything outside ASCII so line separators survive the pipe unchanged.
  const text = JSON.stringify(out).replace(/[\u007f-\uffff]/g, (c) =>
    "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
  );
  process.stdout.write(text);
});
