import { readdirSync, readFileSync } from 'node:fs';

/** CPU seconds (user + system) a process has used, all its threads, from /proc (Linux). */
export function processCpuSeconds(pid: number | string): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0; // not Linux, or the process is gone
  }
}

/** CPU seconds (user + system) of each thread of a process, by thread id, from /proc (Linux; empty elsewhere). */
export function threadCpuSeconds(pid: number | string): Map<string, number> {
  const threads = new Map<string, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return threads;
  }
  for (const tid of tids) {
    try {
      const fields = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ');
      threads.set(tid, (Number(fields[11]) + Number(fields[12])) / 100);
    } catch {
      // exited meanwhile
    }
  }
  return threads;
}

/**
 * A process's CPU between two threadCpuSeconds readings, split into its main thread (the event loop: its thread id is
 * the process id), its busiest other thread (in the gateway under load, embedded PGlite's or an inference worker's) and
 * the rest, in seconds.
 */
export function threadSplit(
  pid: number | string,
  before: Map<string, number>,
  after: Map<string, number>,
): { main: number; busiest: number; rest: number } {
  let main = 0;
  const others: number[] = [];
  for (const [tid, seconds] of after) {
    const used = seconds - (before.get(tid) ?? 0);
    if (tid === String(pid)) main = used;
    else others.push(used);
  }
  others.sort((a, b) => b - a);
  const busiest = others[0] ?? 0;
  return { main, busiest, rest: others.slice(1).reduce((a, b) => a + b, 0) };
}

/** CPU seconds used by every PostgreSQL server process on this machine (0 when there is none). */
export function postgresCpuSeconds(): number {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return 0;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/stat`, 'utf8').includes('(postgres)')) total += processCpuSeconds(entry);
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/** CPU seconds (user + system) this process has used, all its threads. */
export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
