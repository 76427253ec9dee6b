# One image for the API, the worker and the migrate step (the command picks).
# Build stage: type-check and bundle (npm run build → dist/*.mjs, every dependency inside).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY scripts/build.mjs ./scripts/build.mjs
COPY src ./src
# No source maps: the runtime image never reads them.
RUN npx tsc --noEmit && npm run build -- --no-sourcemap

# Runtime: the bundles, the password-hashing addon, the dashboard's chart library and the SQL migrations; no
# TypeScript loader.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/dist ./dist
# The one native addon (Argon2id password hashing) is not in the bundles: it loads from here.
COPY --from=build /app/node_modules/@node-rs ./node_modules/@node-rs
# The dashboard's charts (uPlot's script and stylesheet), read at start-up and inlined in the page.
COPY --from=build /app/node_modules/uplot/package.json ./node_modules/uplot/package.json
COPY --from=build /app/node_modules/uplot/dist ./node_modules/uplot/dist
COPY migrations ./migrations
USER node
CMD ["node", "dist/api.mjs"]
