// Tokenize files with the genba TextMate grammar, as VS Code does: the real vscode-textmate and
// vscode-oniguruma packages (installed by scripts/setup.sh into editors/vscode/node_modules).
// Usage: node tokenize.js GRAMMAR MODULES FILE...; prints {file: [[line, start, end, scopes]...]}
// with 0-based lines and UTF-16 columns, as JavaScript counts them.
"use strict";

const fs = require("fs");
const path = require("path");

const [grammarPath, modulesArg, ...files] = process.argv.slice(2);
const modules = path.resolve(modulesArg);
const vsctm = require(path.join(modules, "vscode-textmate"));
const oniguruma = require(path.join(modules, "vscode-oniguruma"));

async function main() {
  const wasm = fs.readFileSync(path.join(modules, "vscode-oniguruma", "release", "onig.wasm"));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) =>
      scopeName === "source.genba"
        ? vsctm.parseRawGrammar(fs.readFileSync(grammarPath, "utf8"), grammarPath)
        : null,
  });
  const grammar = await registry.loadGrammar("source.genba");
  const out = {};
  for (const file of files) {
    const tokens = [];
    let stack = vsctm.INITIAL;
    fs.readFileSync(file, "utf8").split("\n").forEach((line, number) => {
      const result = grammar.tokenizeLine(line, stack);
      for (const t of result.tokens) {
        tokens.push([number, t.startIndex, Math.min(t.endIndex, line.length), t.scopes]);
      }
      stack = result.ruleStack;
    });
    out[file] = tokens;
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
