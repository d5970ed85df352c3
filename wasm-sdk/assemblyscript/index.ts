// Package entry for `import ... from "hookline-rule"`: asc resolves a package import to
// node_modules/hookline-rule/index.ts. The SDK itself is assembly/index.ts.
export * from "./assembly/index";
