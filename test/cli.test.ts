/**
 * The `shardtls` binary, run as a child process from dist/ (run `npm run build` first).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { generateSelfSigned } from '../src/main/certs.js';
import { buildInput } from '../src/main/serve-command.js';

const CLI = fileURLToPath(new URL('../dist/main/cli.js', import.meta.url));
const SERVER_MODULE = new URL('../dist/main/server.js', import.meta.url).href;

/** Upper bound for one CLI run or one awaited log line. */
const DEADLINE_MS = 20_000;

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { cwd: dir, env, timeout: DEADLINE_MS },
      (error, stdout, stderr) => {
        let code: number | null = 0;
        if (error !== null) code = typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

let dir: string;
let serverLoads = false;

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  try {
    await import(SERVER_MODULE);
    serverLoads = true;
  } catch {
    serverLoads = false;
  }

  dir = mkdtempSync(path.join(tmpdir(), 'shardtls-cli-'));
  const first = await generateSelfSigned();
  const second = await generateSelfSigned();
  const encrypted = createPrivateKey(first.key)
    .export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'right' })
    .toString();

  writeFileSync(path.join(dir, 'cert.pem'), first.cert);
  writeFileSync(path.join(dir, 'key.pem'), first.key);
  writeFileSync(path.join(dir, 'other-key.pem'), second.key);
  writeFileSync(path.join(dir, 'encrypted-key.pem'), encrypted);
  writeFileSync(path.join(dir, 'garbage.pem'), 'not a certificate\n');
  writeFileSync(path.join(dir, 'broken.json'), '{ "port": ');
  writeFileSync(path.join(dir, 'array.json'), '[]');
  writeFileSync(path.join(dir, 'typo.json'), JSON.stringify({ prot: 1 }));
  writeFileSync(
    path.join(dir, 'override.json'),
    JSON.stringify({ transport: 'bogus', handler: 'proxy', backend: 'nope', port: 9 }),
  );
  mkdirSync(path.join(dir, 'a-directory'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('shardtls serve invalid input', () => {
  it.each([
    { name: 'unknown option', args: ['--prot', '1'], text: "unknown option '--prot'" },
    { name: 'unknown command', args: [], command: 'serf', text: "unknown command 'serf'" },
    { name: 'port as text', args: ['--port', 'abc'], text: "'--port <port>' argument 'abc'" },
    { name: 'port out of range', args: ['--port', '70000'], text: 'from 0 to 65535' },
    { name: 'zero shards', args: ['--shards', '0'], text: "'--shards <count>' argument '0'" },
    { name: 'negative drain', args: ['--drain-timeout', '-5'], text: '--drain-timeout' },
    { name: 'fractional timeout', args: ['--handshake-timeout', '1.5'], text: "'1.5'" },
    { name: 'unknown transport', args: ['--transport', 'fast'], text: 'direct, relay' },
    { name: 'unknown version', args: ['--min-version', 'TLSv1.0'], text: 'TLSv1.2, TLSv1.3' },
    {
      name: 'missing certificate file',
      args: ['--cert', 'missing.pem', '--key', 'key.pem'],
      text: "failed to read --cert file '",
    },
    {
      name: 'directory as key file',
      args: ['--cert', 'cert.pem', '--key', 'a-directory'],
      text: 'it is a directory',
    },
    {
      name: 'PEM that does not parse',
      args: ['--cert', 'garbage.pem', '--key', 'key.pem'],
      text: 'invalid --cert: no PEM certificate',
    },
    {
      name: 'key of another certificate',
      args: ['--cert', 'cert.pem', '--key', 'other-key.pem'],
      text: '--key does not match --cert',
    },
    {
      name: 'second pair mismatched',
      args: [
        '--cert',
        'cert.pem',
        '--key',
        'key.pem',
        '--cert',
        'cert.pem',
        '--key',
        'other-key.pem',
      ],
      text: '--key #2 does not match --cert #2',
    },
    {
      name: 'cert without key',
      args: ['--cert', 'cert.pem'],
      text: 'got 1 --cert and 0 --key',
    },
    {
      name: 'wrong passphrase',
      args: ['--cert', 'cert.pem', '--key', 'encrypted-key.pem', '--passphrase-env', 'TEST_PASS'],
      text: 'wrong passphrase',
    },
    {
      name: 'unset passphrase variable',
      args: ['--cert', 'cert.pem', '--key', 'key.pem', '--passphrase-env', 'NO_SUCH_VARIABLE_X'],
      text: 'NO_SUCH_VARIABLE_X',
    },
    { name: 'proxy without backend', args: ['--handler', 'proxy'], text: 'missing backend' },
    {
      name: 'backend without port',
      args: ['--handler', 'proxy', '--backend', 'localhost'],
      text: "invalid --backend 'localhost'",
    },
    {
      name: 'missing handler module',
      args: ['--handler', './no-handler.mjs'],
      text: 'no-handler.mjs',
    },
    { name: 'missing config file', args: ['--config', 'none.json'], text: 'none.json' },
    { name: 'config not JSON', args: ['--config', 'broken.json'], text: 'fix the JSON' },
    { name: 'config not an object', args: ['--config', 'array.json'], text: 'JSON object' },
    { name: 'config unknown key', args: ['--config', 'typo.json'], text: 'unknown option prot' },
  ])('exits 2 for $name', async ({ args, command, text }) => {
    const env = { ...process.env, TEST_PASS: 'wrong' };
    const result = await run([command ?? 'serve', ...args], env);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain(text);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^shardtls: /);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.stdout).toBe('');
  });
});

describe('shardtls serve options', () => {
  it('lets flags override the config file', async () => {
    const fromFile = await run(['serve', '--config', 'override.json']);
    const overridden = await run(['serve', '--config', 'override.json', '--transport', 'relay']);

    expect(fromFile.code).toBe(2);
    expect(fromFile.stderr).toContain('invalid transport "bogus"');
    expect(overridden.code).toBe(2);
    expect(overridden.stderr).toContain("invalid backend 'nope'");
  });

  it('merges config file and flags', () => {
    const input = buildInput({
      config: path.join(dir, 'override.json'),
      transport: 'relay',
      backend: '127.0.0.1:9000',
      cert: ['a.pem'],
      key: ['b.pem'],
      alpn: ['h2', 'http/1.1'],
    });

    expect(input).toEqual({
      transport: 'relay',
      handler: 'proxy',
      backend: '127.0.0.1:9000',
      port: 9,
      tls: { certs: [{ cert: 'a.pem', key: 'b.pem' }], alpnProtocols: ['h2', 'http/1.1'] },
    });
  });

  it('lists every option in --help', async () => {
    const result = await run(['serve', '--help']);
    const options = [
      '--config <file>',
      '--host <address>',
      '--port <port>',
      '--backlog <count>',
      '--shards <count>',
      '--transport <kind>',
      '--balance <policy>',
      '--cert <file>',
      '--key <file>',
      '--passphrase-env <name>',
      '--ca <file>',
      '--request-cert',
      '--require-cert',
      '--alpn <list>',
      '--min-version <version>',
      '--max-version <version>',
      '--ciphers <list>',
      '--ciphersuites <list>',
      '--handler <name>',
      '--backend <host:port>',
      '--max-connections <count>',
      '--handshake-timeout <ms>',
      '--drain-timeout <ms>',
      '--stats-port <port>',
      '--log-level <level>',
    ];

    expect(result.code).toBe(0);
    for (const option of options) expect(result.stdout).toContain(option);
    expect(result.stdout).toMatch(/--handshake-timeout <ms>\s+milliseconds/);
    expect(result.stdout).toMatch(/--drain-timeout <ms>\s+milliseconds/);
  });

  it('lists serve and bench in top-level help', async () => {
    const result = await run(['--help']);

    expect(result.code).toBe(0);
    expect(result.stdout).toContain('serve');
    expect(result.stdout).toContain('bench');
  });
});

/** A running `shardtls serve` and its JSON log lines. */
interface ServeProcess {
  child: ChildProcess;
  exit: Promise<number | null>;
  /** Resolves with the first log line whose `msg` is one of `msgs`; rejects after DEADLINE_MS. */
  waitForLog(...msgs: string[]): Promise<Record<string, unknown>>;
}

function startServe(args: string[]): ServeProcess {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(JSON.parse(line) as Record<string, unknown>);
    for (const wake of waiters) wake();
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

  const waitForLog = (...msgs: string[]): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = lines.find((line) => msgs.includes(line.msg as string));
        if (found === undefined) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        const expected = msgs.join("' or '");
        reject(
          new Error(`no log line '${expected}' in ${DEADLINE_MS} ms: ${JSON.stringify(lines)}`),
        );
      }, DEADLINE_MS);
      waiters.add(check);
      check();
    });
  return { child, exit, waitForLog };
}

function echoOnce(port: number, text: string): Promise<{ reply: string; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      socket.write(text);
    });
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (reply.length < text.length) return;
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve({ reply, fingerprint });
    });
    socket.on('error', reject);
  });
}

function getJson(port: number, urlPath: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: urlPath }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => {
        const isJson = response.headers['content-type'] === 'application/json';
        resolve({ status: response.statusCode ?? 0, body: isJson ? JSON.parse(text) : text });
      });
    }).on('error', reject);
  });
}

describe('shardtls serve running', () => {
  let serve: ServeProcess | undefined;
  let unavailable: string | undefined;
  let port = 0;
  let statsPort = 0;
  let fingerprint = '';

  beforeAll(async () => {
    if (!serverLoads) {
      unavailable = 'dist/main/server.js does not load';
      return;
    }
    serve = startServe(['--port', '0', '--shards', '1', '--stats-port', '0']);
    const started = await serve.waitForLog('stats endpoint listening', 'shard failed');
    if (started.msg !== 'stats endpoint listening') {
      unavailable = `the server does not start: ${JSON.stringify(started)}`;
      return;
    }

    const warning = await serve.waitForLog(
      'no certificate given: serving a self-signed one that clients do not trust; ' +
        'pass --cert and --key for production',
    );
    fingerprint = String(warning.fingerprint256);
    port = (await serve.waitForLog('listening')).port as number;
    statsPort = Number(String(started.address).split(':')[1]);
  });

  afterAll(async () => {
    if (serve !== undefined && serve.child.exitCode === null) {
      serve.child.kill('SIGKILL');
      await serve.exit;
    }
  });

  it('serves echo with the logged certificate', async (context) => {
    if (unavailable !== undefined) context.skip(unavailable);

    const result = await echoOnce(port, 'ping');

    expect(result.reply).toBe('ping');
    expect(result.fingerprint).toBe(fingerprint);
  });

  it('serves stats as JSON', async (context) => {
    if (unavailable !== undefined) context.skip(unavailable);

    const response = await getJson(statsPort, '/stats');
    const body = response.body as { memory: { rss: number }; connections: object };

    expect(response.status).toBe(200);
    expect(body.memory.rss).toBeGreaterThan(0);
    expect(body.connections).toBeDefined();
    expect((await getJson(statsPort, '/other')).status).toBe(404);
  });

  it('exits 2 when the port is in use', async (context) => {
    if (unavailable !== undefined) context.skip(unavailable);

    const result = await run(['serve', '--port', String(port), '--shards', '1']);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`127.0.0.1:${port}`);
    expect(result.stderr).toContain('already in use');
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  });

  it('reloads certificates on SIGHUP', async (context) => {
    if (unavailable !== undefined) context.skip(unavailable);

    serve!.child.kill('SIGHUP');
    await serve!.waitForLog('certificate reloaded');

    expect((await echoOnce(port, 'pong')).reply).toBe('pong');
  });

  it('drains and exits 0 on SIGTERM', async (context) => {
    if (unavailable !== undefined) context.skip(unavailable);

    serve!.child.kill('SIGTERM');
    await serve!.waitForLog('stopped');

    expect(await serve!.exit).toBe(0);
  });
});
