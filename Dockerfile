# One image for the API, the worker and the migrate step (the command picks).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY tsconfig.json ./
COPY src ./src
COPY migrations ./migrations
USER node
CMD ["node", "--import", "tsx", "src/bin/api.ts"]
