# syntax=docker/dockerfile:1
# Switchboard: one image, two processes.
#   gateway (default):  node dist/src/gateway.js
#   worker:             node dist/src/worker.js
#   migrations:         node dist/src/migrate.js
# Build: docker build -t switchboard .

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile TypeScript to dist/ ------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# npm 10 (shipped with Node 20) runs every install script; npm 11 honours package.json's
# allowScripts. Either way no native compilation happens: the packages ship prebuilt binaries.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY types ./types
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
COPY scripts ./scripts
RUN npx tsc -p tsconfig.build.json

# ---- runtime: production dependencies + compiled output ---------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# src/db/migrate.ts finds migrations/ beside package.json.
COPY migrations ./migrations
# The dashboard's and the portal's scripts and stylesheets are served as they are (their assets.ts find them here).
COPY src/dashboard/assets ./src/dashboard/assets
COPY src/portal/assets ./src/portal/assets
# Files stay root-owned and read-only to the app; the worker bundles its workflows in memory.
# The one writable place: the audit checkpoint copies (a volume in docker-compose.yml).
RUN mkdir -p /var/lib/switchboard/audit-checkpoints && chown node:node /var/lib/switchboard/audit-checkpoints
USER node
EXPOSE 3000
CMD ["node", "dist/src/gateway.js"]
