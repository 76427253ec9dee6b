/**
 * Lint and format (`npm run lint`, `npm run format`): the Effect repositories'
 * setup (typescript-eslint, and @effect/eslint-plugin's dprint rule as the
 * formatter) plus the import layering of docs/ARCHITECTURE.md.
 *
 * Layering: eslint-plugin-import-x, because one plugin gives both the layer
 * zones (no-restricted-paths) and no-cycle, resolving the `.js` imports to
 * their `.ts` files through the TypeScript resolver.
 */
import * as effectEslint from "@effect/eslint-plugin"
import js from "@eslint/js"
import { createTypeScriptImportResolver } from "eslint-import-resolver-typescript"
import { importX } from "eslint-plugin-import-x"
import { defineConfig } from "eslint/config"
import tseslint from "typescript-eslint"

/** The layers, bottom to top. A module may import its own layer and any lower one, never a higher one. */
const LAYERS = [
  {
    name: "foundation",
    paths: ["src/Config.ts", "src/Logging.ts", "src/Fatal.ts", "src/Shutdown.ts", "src/Domain", "src/Kit"]
  },
  { name: "infrastructure", paths: ["src/Observability", "src/Store", "src/Broker", "src/Outbox", "src/Retention"] },
  // Features may import each other; no-cycle keeps that a fixed order.
  {
    name: "features",
    paths: [
      "src/Auth",
      "src/Users",
      "src/Tickets",
      "src/Messages",
      "src/Health",
      "src/Ops",
      "src/Dlq",
      "src/Worker",
      "src/Webhooks",
      "src/Notifications"
    ]
  },
  { name: "composition root", paths: ["src/App", "src/Cli"] },
  { name: "entrypoints", paths: ["src/bin"] }
]

const layerZones = LAYERS.slice(0, -1).map((layer, i) => ({
  target: layer.paths,
  from: LAYERS.slice(i + 1).flatMap((above) => above.paths),
  message: `The ${layer.name} layer imports only itself and lower layers (docs/ARCHITECTURE.md).`
}))

/** `Config.<reader>(...)`: every reader that takes a variable name. */
const configReaders =
  "string|number|integer|boolean|literal|redacted|secret|port|url|date|duration|logLevel|nonEmptyString|array|chunk|hashSet|hashMap|nested"

const restrictedSyntax = [
  {
    selector: "CallExpression[callee.property.name='push'] > SpreadElement.arguments",
    message: "Do not use spread arguments in Array.push"
  }
]

const configOnlyInConfigTs = [
  {
    selector: `CallExpression[callee.object.name='Config'][callee.property.name=/^(${configReaders})$/]`,
    message: "Configuration is read only in src/Config.ts: define the setting there and import it."
  },
  {
    selector: "MemberExpression[object.name='process'][property.name='env']",
    message: "Configuration is read only in src/Config.ts (through Effect Config), not from process.env."
  }
]

export default defineConfig(
  { ignores: ["dist/", "coverage/", "node_modules/", ".bench/", ".broker-users/", "**/*.md"] },
  js.configs.recommended,
  tseslint.configs.recommended,
  effectEslint.configs.dprint,
  {
    plugins: { "import-x": importX },
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module"
    },
    settings: {
      // Without these, import-x would not parse the .ts files it follows and no-cycle would see no cycle.
      "import-x/extensions": [".ts", ".mts", ".js", ".mjs"],
      "import-x/external-module-folders": ["node_modules", "node_modules/@types"],
      "import-x/parsers": { "@typescript-eslint/parser": [".ts", ".mts"] },
      "import-x/resolver-next": [createTypeScriptImportResolver({ project: "./tsconfig.json" })]
    },
    rules: {
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/array-type": ["error", { default: "generic", readonly: "generic" }],
      "@typescript-eslint/no-namespace": "off",
      "object-shorthand": "error",
      "require-yield": "off",
      // Input validation matches control characters on purpose (NUL in text, ANSI escapes in CLI output).
      "no-control-regex": "off",
      "no-restricted-syntax": ["error", ...restrictedSyntax],
      "import-x/first": "error",
      "import-x/newline-after-import": "error",
      "import-x/no-duplicates": "error"
    }
  },
  { files: ["**/*.mjs"], languageOptions: { globals: { console: "readonly", process: "readonly", URL: "readonly" } } },
  {
    files: ["src/**/*.ts"],
    rules: {
      "import-x/no-unresolved": "error",
      "import-x/no-cycle": ["error", { ignoreExternal: true }],
      "import-x/no-restricted-paths": ["error", { basePath: import.meta.dirname, zones: layerZones }],
      "no-restricted-imports": ["error", {
        paths: [{ name: "amqplib", message: "Everything AMQP lives in src/Broker." }]
      }],
      "no-restricted-syntax": ["error", ...restrictedSyntax, ...configOnlyInConfigTs]
    }
  },
  { files: ["src/Broker/**/*.ts"], rules: { "no-restricted-imports": "off" } },
  { files: ["src/Config.ts"], rules: { "no-restricted-syntax": ["error", ...restrictedSyntax] } },
  // Entrypoints hand the whole environment to the processes they spawn.
  {
    files: ["src/bin/**/*.ts"],
    rules: { "no-restricted-syntax": ["error", ...restrictedSyntax, configOnlyInConfigTs[0]] }
  }
)
