// The genba extension: the .genba language (grammar and editing rules, from package.json) and a
// client that starts `genbac lsp` over stdio for every .genba file. Everything the editor shows
// about a spec (diagnostics, quick fixes, hover, completion, formatting, outline, definitions)
// comes from that server; this file only starts and stops it.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("genba");
  const command = config.get("server.command") || "genbac";
  const args = config.get("server.args") || ["lsp"];
  const serverOptions = { command, args, transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [
      { scheme: "file", language: "genba" },
      { scheme: "untitled", language: "genba" },
    ],
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/*.genba") },
  };
  client = new LanguageClient("genba", "genbac language server", serverOptions, clientOptions);
  return client.start().catch((error) => {
    vscode.window.showErrorMessage(
      `genba: could not start \`${command} ${args.join(" ")}\` (${error.message}). ` +
        "Install genbac (pip install genbac) or set genba.server.command to its path.");
  });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
