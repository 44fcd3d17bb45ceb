// Parse an AsyncAPI document with the official parser and print every diagnostic as JSON
// lines ({"severity", "code", "message", "path"}); exit 1 if there is any error or warning.
// Usage: node validate.mjs docs/asyncapi.yaml
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "information", "hint"];
const path = process.argv[2];
const { diagnostics } = await new Parser().parse(readFileSync(path, "utf8"), { source: path });
for (const d of diagnostics) {
  console.log(JSON.stringify({
    severity: SEVERITY[d.severity], code: d.code, message: d.message, path: d.path.join("."),
  }));
}
process.exit(diagnostics.some((d) => d.severity <= 1) ? 1 : 0);
