# The kv node image (deploy/, docs/deploy.md). Build: docker build -t kv:0.1.0 .
# Runtime needs: Node.js 20 and the production dependencies (tsx runs the TypeScript
# sources, level's prebuilt LevelDB binding for linux-x64/arm64 glibc, uplot for the
# dashboard). No compiler, no openssl, no shell tools: probes are HTTP, the preStop hook
# is a Node script.
FROM node:20-slim

WORKDIR /opt/kv
ENV NODE_ENV=production

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY bin ./bin
COPY lib ./lib
COPY deploy/prestop.mjs ./deploy/prestop.mjs

# The data volume is mounted at /var/lib/kv (KV_DATA); the image's user owns it through
# the pod's fsGroup.
RUN mkdir -p /var/lib/kv && chown node:node /var/lib/kv
USER node
EXPOSE 7001
ENTRYPOINT ["node", "bin/kv.js"]
CMD ["node"]
