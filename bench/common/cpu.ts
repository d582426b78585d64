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
