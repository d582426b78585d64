/**
 * Runs embedded PostgreSQL (PGlite, WebAssembly) in its own thread and serves it on a Unix socket
 * with pglite-socket, so the gateway talks to it through the same `pg` driver and migrations as to
 * a PostgreSQL server, and its queries never run on the event loop that answers HTTP.
 *
 * Hot writers can also run here, beside the database (see EmbeddedPostgres.attach): a module loaded
 * into this thread gets an EmbeddedSession and a MessagePort. It then skips the socket, the `pg`
 * driver on both sides and a thread hop, and sends a whole statement (Bind, Execute, Sync) in one
 * call instead of one call per protocol message. Called in a loop, an INSERT of 25 audit rows took
 * about 1 ms this way and 2.2 ms through PGlite's own query() (which parses the statement again and
 * makes one call per message), one row 0.14 ms and 0.45 ms.
 */
import { rmSync } from 'node:fs';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { PGlite, protocol } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

export interface EmbeddedPostgresWorkerData {
  dataDir: string;
  socketPath: string;
  maxConnections: number;
}

export type EmbeddedPostgresMessage =
  | { type: 'listening' }
  | { type: 'failed'; message: string }
  | { type: 'stopped' }
  /** PostgreSQL PANICked (see refuseAfterPanic): this database is done; the parent starts another. */
  | { type: 'panicked' };

/** Loads `module` into this thread and hands it `port` (its other end stays with the caller). */
export interface EmbeddedAttach {
  type: 'attach';
  module: string;
  port: MessagePort;
  /** What the caller hands the module with the port (EmbeddedPostgres.attach). */
  data?: unknown;
}

/** One text-format result row: its fields in column order, null for SQL NULL. */
export type EmbeddedRow = Array<string | null>;

/** What a module attached beside the database may do with it. */
export interface EmbeddedSession {
  /**
   * Runs one exchange of extended-protocol messages, ending in Sync, in a single call: atomic with
   * respect to every socket client. It waits for a moment when no socket client has a transaction
   * or an unfinished exchange open (so it never joins their transaction, nor ends an implicit one
   * whose portal they are about to execute). Resolves with the DataRows; rejects with the database's
   * error, after which the Sync has rolled the exchange back.
   */
  exchange(messages: Uint8Array): Promise<EmbeddedRow[]>;
  /** The wire protocol's message builders (parse, bind, execute, sync, ...). */
  readonly serialize: typeof protocol.serialize;
  /** A Bind of text parameters to a prepared statement: see bindText. */
  readonly bindText: typeof bindText;
}

/**
 * The Bind message of `values` (text format, null for SQL NULL) to the prepared `statement`, on
 * the unnamed portal, all results in text: what `serialize.bind` makes (it lists one text format
 * code where this lists none, which the protocol reads alike), sized first and written once. The
 * serializer grows its buffer by doubling and copies each value twice on the way: for an 8-row audit
 * group (a few KiB of JSON) that was a fifth to a third of the database thread's CPU per row.
 */
export function bindText(statement: string, values: ReadonlyArray<string | null>): Buffer {
  let length = 4 + 1 + Buffer.byteLength(statement) + 1 + 2 + 2 + 2;
  const sizes = values.map((value) => (value === null ? -1 : Buffer.byteLength(value)));
  for (const size of sizes) length += 4 + Math.max(size, 0);
  const out = Buffer.allocUnsafe(1 + length);
  let at = out.writeUInt8(0x42, 0); // 'B'
  at = out.writeInt32BE(length, at);
  at = out.writeUInt8(0, at); // unnamed portal
  at += out.write(statement, at);
  at = out.writeUInt8(0, at);
  at = out.writeInt16BE(0, at); // every parameter in text
  at = out.writeInt16BE(values.length, at);
  values.forEach((value, i) => {
    at = out.writeInt32BE(sizes[i], at);
    if (value !== null) at += out.write(value, at);
  });
  out.writeInt16BE(0, at); // every result column in text
  return out;
}

/** The export an attached module provides. */
export interface EmbeddedModule {
  attachEmbedded(session: EmbeddedSession, port: MessagePort, data: unknown): void;
}

/** Message types that end a socket client's exchange: Sync, a simple Query, Terminate. */
const EXCHANGE_ENDS = new Set(['S', 'Q', 'X'].map((c) => c.charCodeAt(0)));
/** A socket client that stops in the middle of an exchange for this long has abandoned it. */
const ABANDONED_EXCHANGE_MS = 2000;

/** Whether the last socket message left its client's exchange open, and when it ran. */
interface SocketExchange {
  open: boolean;
  at: number;
}

const socketExchanges = new WeakMap<PGlite, SocketExchange>();

/**
 * Watches pglite-socket's calls into the database: it runs each socket message through
 * db.execProtocolRawStream, one at a time, so the last of them tells whether a socket client is in the
 * middle of an exchange (Parse ... Sync), which db.isInTransaction() alone does not (an implicit
 * transaction is no transaction block). Modules beside the database and PGlite's own calls take other ways in.
 */
function socketExchange(db: PGlite): SocketExchange {
  const known = socketExchanges.get(db);
  if (known) return known;
  const exchange: SocketExchange = { open: false, at: 0 };
  const raw = db.execProtocolRawStream.bind(db);
  db.execProtocolRawStream = (message, options) => {
    exchange.open = message.length > 0 && message[0] !== 0 && !EXCHANGE_ENDS.has(message[0]);
    exchange.at = performance.now();
    return raw(message, options);
  };
  socketExchanges.set(db, exchange);
  return exchange;
}

/**
 * The database as pglite-socket's server is to see it: one socket client's exchange at a time. Its queue
 * runs each socket message on its own and keeps to the client that ran the last one only while
 * db.isInTransaction(); PGlite has one session for all of them, so another client's Parse between a
 * Parse and its Bind replaced the unnamed statement, and the Bind failed (08P01, "bind message supplies
 * 6 parameters, but prepared statement "" requires 2") or, of the same shape, could run the other's
 * statement with its values (electric-sql/pglite#1046, open in 0.2.18). Told here that an open exchange
 * is a transaction, the queue waits for that client's next message (a client that goes away mid-exchange
 * is rolled back and let go, as one in a transaction).
 */
export function oneExchangeAtATime(db: PGlite): PGlite {
  const exchange = socketExchange(db);
  const isInTransaction = (): boolean => db.isInTransaction() || exchange.open;
  // PGlite keeps its state in #private fields: every other member is the database's own, called on it.
  return new Proxy(db, {
    get(target, property) {
      if (property === 'isInTransaction') return isInTransaction;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** The session beside the database: see EmbeddedSession. */
export function embeddedSession(db: PGlite): EmbeddedSession {
  const exchange = socketExchange(db);
  const busy = (): boolean =>
    db.isInTransaction() || (exchange.open && performance.now() - exchange.at < ABANDONED_EXCHANGE_MS);
  return {
    serialize: protocol.serialize,
    bindText,
    async exchange(messages: Uint8Array): Promise<EmbeddedRow[]> {
      for (;;) {
        // execProtocolStream, not execProtocol: it routes the answer to its own parser, where
        // execProtocol would write it to whatever callback the last socket message left behind.
        const result = await db.runExclusive(async () => (busy() ? undefined : db.execProtocolStream(messages)));
        if (result) {
          const rows: EmbeddedRow[] = [];
          for (const m of result) if (m instanceof protocol.messages.DataRowMessage) rows.push(m.fields);
          return rows;
        }
        // A socket client's transaction or exchange is open: let its next message in first.
        await new Promise((later) => setTimeout(later, 1));
      }
    },
  };
}

/** The parts of PGlite's Emscripten module used here. */
interface EmscriptenModule {
  onAbort?: (what: unknown) => void;
  FS: EmscriptenFs;
}

interface EmscriptenFs {
  /** Open files by descriptor; a NODEFS one holds a descriptor of this process (`nfd`). */
  streams: Array<{ nfd?: number } | null | undefined>;
  close(stream: object): void;
}

/**
 * Closes every file a PGlite that PANICked still holds open on the host (its data files and WAL). The
 * descriptors belong to the process, not the thread, so ending the thread would leave them open for the
 * process's life: each restart would leak a database's worth, and a freed disk would keep the space of
 * the files PostgreSQL removes.
 */
function releaseFiles(fs: EmscriptenFs): void {
  for (const stream of fs.streams) {
    if (stream?.nfd === undefined) continue;
    try {
      fs.close(stream);
    } catch {
      // already closed, or a descriptor the host no longer has: nothing to release
    }
  }
}

/** What every call into a database that PANICked is refused with: SQLSTATE 57P02, crash_shutdown. */
export const PANICKED_MESSAGE =
  'terminating connection because the embedded database stopped after a PANIC; it is being restarted';

/**
 * A PANIC (PostgreSQL's "cannot go on": a WAL segment it could not write on a full disk, for one) aborts
 * PGlite's WebAssembly in the middle of its work. The call that PANICked returns its error, but every later
 * call loops forever inside PGlite (execProtocolRawSync waits for input its broken backend never takes),
 * which would hold this thread, its socket clients and the modules beside it for good. PostgreSQL itself
 * restarts after a PANIC; this is that for PGlite: the abort is caught as it happens (Emscripten calls
 * Module.onAbort), `panicked` is called once, and from then on every call is refused at once with
 * 57P02 (crash_shutdown) instead of hanging, until the parent replaces this thread.
 */
export function refuseAfterPanic(db: PGlite, panicked: () => void): void {
  // PGlite keeps its Emscripten module protected; onAbort is Emscripten's documented hook.
  const mod = (db as unknown as { mod: EmscriptenModule }).mod;
  let aborted = false;
  mod.onAbort = () => {
    if (aborted) return;
    aborted = true;
    panicked();
    // Out of the aborted call's stack: nothing runs in the database any more, so its files can go.
    setImmediate(() => releaseFiles(mod.FS));
  };
  // Every way into the database (query, exec, the socket's stream, a module's exchange) runs this.
  const rawSync = db.execProtocolRawSync.bind(db);
  db.execProtocolRawSync = (message: Uint8Array): Uint8Array => {
    if (aborted) throw Object.assign(new Error(PANICKED_MESSAGE), { code: '57P02', severity: 'FATAL' });
    return rawSync(message);
  };
}

async function main(): Promise<void> {
  const { dataDir, socketPath, maxConnections } = workerData as EmbeddedPostgresWorkerData;
  const port = parentPort;
  if (!port) throw new Error('embedded-postgres.worker must run as a worker thread');
  const post = (message: EmbeddedPostgresMessage): void => port.postMessage(message);
  try {
    const db = await PGlite.create(dataDir);
    refuseAfterPanic(db, () => post({ type: 'panicked' }));
    const session = embeddedSession(db);
    rmSync(socketPath, { force: true }); // left over by a process that did not stop cleanly
    const server = new PGLiteSocketServer({ db: oneExchangeAtATime(db), path: socketPath, maxConnections });
    await server.start();
    port.on('message', (msg: 'stop' | EmbeddedAttach) => {
      if (msg === 'stop') {
        void (async () => {
          await server.stop();
          await db.close();
          post({ type: 'stopped' });
        })();
        return;
      }
      // A module of this build (EmbeddedPostgres.attach), loaded by its compiled path.
      void (import(msg.module) as Promise<EmbeddedModule>).then(
        (loaded) => loaded.attachEmbedded(session, msg.port, msg.data),
        () => msg.port.close(),
      );
    });
    post({ type: 'listening' });
  } catch (error) {
    post({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
  }
}

// Started as the worker thread; a module loaded beside the database (or a test) only imports it.
if (parentPort && (workerData as Partial<EmbeddedPostgresWorkerData> | null)?.socketPath) void main();
