import type { BenchResult } from './run.js';

function rate(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

/** Formats a bench result as the human summary printed at the end of a run. */
export function formatSummary(result: BenchResult): string {
  const lines: string[] = [];
  const what = result.scenario === undefined ? result.mode : `scenario ${result.scenario}`;
  const latency = result.latencyUs;

  lines.push(
    `shardtls bench ${result.target}: ${what}, ${result.connections} connections, ` +
      `${result.threads} threads, ${result.seconds.toFixed(2)} s`,
  );
  lines.push(`  requests    ${result.requests} (${rate(result.requestsPerSecond)}/s)`);
  lines.push(
    `  throughput  ${rate(result.megabytesPerSecond)} MB/s echoed ` +
      `(${result.bytesReceived} bytes received, ${result.bytesSent} sent)`,
  );
  lines.push(
    `  handshakes  ${result.handshakes} (${rate(result.handshakesPerSecond)}/s), ` +
      `${result.resumed} resumed`,
  );
  lines.push(
    `  latency us  p50 ${latency.p50}  p90 ${latency.p90}  p99 ${latency.p99}  ` +
      `p99.9 ${latency.p999}  max ${latency.max}`,
  );

  const errors = Object.entries(result.errors).map(([kind, count]) => `${kind} ${count}`);
  lines.push(`  errors      ${errors.length === 0 ? 'none' : errors.join(', ')}`);
  for (const mismatch of result.mismatches) {
    lines.push(
      `  mismatch    connection ${mismatch.connection} offset ${mismatch.offset}: ` +
        `got ${mismatch.actual}, expected ${mismatch.expected}`,
    );
  }

  if (result.invariant !== undefined) {
    lines.push(`  invariant   ${result.invariant}`);
    for (const [key, value] of Object.entries(result.details)) {
      lines.push(`  ${key}: ${JSON.stringify(value)}`);
    }
  }

  if (result.ok) {
    lines.push(
      result.invariant === undefined ? '  result      ok' : '  result      invariant held',
    );
  } else {
    const label = result.invariant === undefined ? 'FAILED' : 'INVARIANT BROKEN';
    for (const failure of result.failures) lines.push(`  ${label}: ${failure}`);
  }

  return lines.join('\n');
}
