// The example application's API: users from PostgreSQL behind a Redis cache.
//
// Health endpoints are what the Kubernetes probes and the ALB health check use:
//   /healthz  the process is alive (liveness, startup)
//   /readyz   PostgreSQL answers (readiness, ALB health check)
//   /metrics  Prometheus: http_requests_total and
//             http_request_duration_seconds, which the AnalysisTemplate reads.
// Redis is a cache: when it is down requests go to PostgreSQL and the pod
// stays ready.
'use strict';

const express = require('express');
const pg = require('pg');
const promClient = require('prom-client');
const redis = require('redis');

const config = {
  port: Number(process.env.PORT || 8080),
  databaseUrl: process.env.DATABASE_URL || 'postgres://app@127.0.0.1:5432/app',
  // The pool budget: replicas × DB_POOL_MAX must stay below the database's
  // max_connections (see manifests/example/overlays/prod).
  poolMax: Number(process.env.DB_POOL_MAX || 10),
  redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
  cacheSeconds: Number(process.env.CACHE_TTL_SECONDS || 30),
  version: process.env.APP_VERSION || 'dev',
};

const db = new pg.Pool({
  connectionString: config.databaseUrl,
  max: config.poolMax,
  connectionTimeoutMillis: 2000,
  idleTimeoutMillis: 30000,
});
db.on('error', (err) => log('warn', 'idle PostgreSQL connection failed', { error: err.message }));

const cache = redis.createClient({
  url: config.redisUrl,
  // Fail fast while Redis is away instead of queueing requests behind it.
  disableOfflineQueue: true,
  socket: {
    connectTimeout: 1000,
    reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 5000),
  },
});
// Log when the cache goes away or comes back, not at every reconnect attempt.
let cacheDown = false;
cache.on('error', (err) => {
  if (!cacheDown) log('warn', 'redis unavailable; serving from PostgreSQL', { error: err.message });
  cacheDown = true;
});
cache.on('ready', () => {
  if (cacheDown) log('info', 'redis is back');
  cacheDown = false;
});
cache.connect().catch(() => {}); // reconnects in the background

const registry = new promClient.Registry();
promClient.collectDefaultMetrics({ register: registry });
const requests = new promClient.Counter({
  name: 'http_requests_total',
  help: 'HTTP requests by method, route and status code',
  labelNames: ['method', 'route', 'code'],
  registers: [registry],
});
const duration = new promClient.Histogram({
  name: 'http_request_duration_seconds',
  help: 'HTTP request latency by method and route',
  labelNames: ['method', 'route'],
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [registry],
});

const app = express();
app.disable('x-powered-by');

// Probes and scrapes are not API traffic: keep them out of the error rate.
app.get('/healthz', (_req, res) => res.type('text').send('ok'));
app.get('/readyz', async (_req, res) => {
  try {
    await withTimeout(db.query('SELECT 1'), 1000, 'PostgreSQL');
    res.type('text').send('ready');
  } catch (err) {
    res.status(503).type('text').send(`not ready: ${err.message}`);
  }
});
app.get('/metrics', async (_req, res) => {
  res.type(registry.contentType).send(await registry.metrics());
});

app.use('/api', (req, res, next) => {
  const stop = duration.startTimer();
  res.on('finish', () => {
    const route = req.route ? req.route.path : 'unmatched';
    requests.inc({ method: req.method, route, code: String(res.statusCode) });
    stop({ method: req.method, route });
  });
  next();
});

app.get('/api/version', (_req, res) => res.json({ version: config.version }));

app.get('/api/users', async (_req, res, next) => {
  try {
    const cached = await cacheGet('users');
    if (cached) return res.set('x-cache', 'hit').type('json').send(cached);
    const { rows } = await db.query('SELECT id, name FROM users ORDER BY id LIMIT 100');
    const body = JSON.stringify(rows);
    cacheSet('users', body);
    res.set('x-cache', 'miss').type('json').send(body);
  } catch (err) {
    next(err);
  }
});

app.use('/api', (_req, res) => res.status(404).json({ error: 'not found' }));

// eslint-disable-next-line no-unused-vars
app.use((err, req, res, _next) => {
  log('error', 'request failed', { path: req.path, error: err.message });
  res.status(503).json({ error: 'the database is unavailable' });
});

async function cacheGet(key) {
  if (!cache.isReady) return null;
  try {
    return await cache.get(key);
  } catch {
    return null;
  }
}

function cacheSet(key, value) {
  if (cache.isReady) cache.setEx(key, config.cacheSeconds, value).catch(() => {});
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms}ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function log(level, msg, fields = {}) {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
}

const server = app.listen(config.port, () => {
  log('info', 'listening', { port: config.port, version: config.version, poolMax: config.poolMax });
});

// SIGTERM comes after the preStop sleep, once the ALB has stopped sending
// new requests: stop accepting, finish what is in flight, close the pools.
process.on('SIGTERM', () => {
  log('info', 'SIGTERM: finishing in-flight requests');
  server.close(async () => {
    await Promise.allSettled([db.end(), cache.isOpen ? cache.quit() : null]);
    process.exit(0);
  });
  // Idle keep-alive connections would hold close() open.
  setTimeout(() => server.closeIdleConnections(), 1000).unref();
});
