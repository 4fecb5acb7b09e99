"""Dies at start the way a node app run by npm does: a stack trace, then npm's notices on top of it."""

import sys

print("> procs@1.0.0 start")
print("> node server.js")
print("", flush=True)
for line in ["/app/server.js:3", "const express = require('expresss');", "                ^", "",
             "Error: Cannot find module 'expresss'",
             "    at Module._resolveFilename (node:internal/modules/cjs/loader:1145:15)",
             "    at Object.<anonymous> (/app/server.js:3:17) {", "  code: 'MODULE_NOT_FOUND'", "}", ""]:
    print(line, file=sys.stderr)
for line in ["npm notice", "npm notice New major version of npm available! 9.8.1 -> 10.8.2",
             "npm notice Changelog: https://github.com/npm/cli/releases/tag/v10.8.2",
             "npm notice Run npm install -g npm@10.8.2 to update!", "npm notice", ""]:
    print(line, file=sys.stderr)
print("npm WARN config production Use `--omit=dev` instead.", flush=True)
sys.exit(1)
