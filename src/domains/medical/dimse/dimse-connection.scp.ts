import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { association, constants, Dataset, requests, responses, Scp } from 'dcmjs-dimse';
import {
  AssociationRefusal,
  judgeAssociateProtocol,
  judgePresentationContext,
  readAssociateProtocol,
} from './dimse-negotiation.util';

const { AbortReason, AbortSource, PresentationContextResult, RejectReason, RejectResult, RejectSource, Status } =
  constants;
/**
 * Every command field the library dispatches (requests to this SCP's events, responses to its pending
 * requests). Its typings leave the table out; it is there at run time.
 */
const COMMAND_FIELDS = (constants as unknown as { CommandFieldType: Record<string, number> }).CommandFieldType;
const KNOWN_COMMAND_FIELDS = new Set<number>(Object.values(COMMAND_FIELDS));

/** One instance as it came by C-STORE: the data set bytes untouched, in the presentation context's transfer syntax. */
export interface ReceivedInstance {
  callingAeTitle: string;
  peer: string;
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  /** The abstract syntax of the presentation context it came on ('' when no data set came). */
  abstractSyntaxUid: string;
  /** Undefined when it was dropped as it came, or never came (`dropped` says why). */
  dataset: Buffer | undefined;
  /**
   * BODY_TOO_LARGE: it grew past the size limit (MEDICAL_MAX_BODY_BYTES); UPLOADS_BUSY: other uploads held the whole upload budget;
   * NO_DATASET: the C-STORE-RQ said no data set follows (CommandDataSetType 0101H).
   */
  dropped?: DatasetDropped;
  /** performance.now() when its first data set fragment arrived. */
  startedAt: number;
}

export interface StoreAnswer {
  status: number;
  /** ErrorComment of a failure: at most 64 characters, never patient data. */
  comment?: string;
}

export type DatasetDropped = 'BODY_TOO_LARGE' | 'UPLOADS_BUSY' | 'NO_DATASET';

/** The bytes of uploads the process holds at once (shared with the HTTP bodies). */
export interface ByteBudget {
  /** Takes `bytes` more for an upload that holds `own` already; false when it would pass the budget. */
  take(bytes: number, own: number): boolean;
  release(bytes: number): void;
}

/** What the Nest service decides for each connection; the connection only speaks the protocol. */
export interface DimseHandler {
  readonly maxDatasetBytes: number;
  /** Each data set's bytes count against it from their arrival until the C-STORE is answered. */
  readonly uploads: ByteBudget;
  /** `protocol`: the request's own refusal (its protocol version or application context), if any. */
  admit(
    called: string,
    calling: string,
    peer: string,
    protocol?: AssociationRefusal,
  ): Promise<AssociationRefusal | undefined>;
  /** Must resolve (a failure is a status), and only once the answer may leave (its audit row is committed). */
  store(instance: ReceivedInstance): Promise<StoreAnswer>;
  /** The connection ends; `message` names the protocol step, never data set content. */
  connectionError(peer: string, message: string): void;
}

export interface ConnectionTimeouts {
  /** ARTIM (PS3.8 9.1.5): the A-ASSOCIATE-RQ must be whole this long after the connection opens, and a peer that was rejected or released has this long to close. */
  artimMs: number;
  /** A PDU, or a DIMSE message with its data set, must be whole this long after its first byte, however its bytes trickle. */
  receiveMs: number;
  /** An association with nothing arriving for this long is closed (the library's PDU timeout). */
  idleMs: number;
}

/**
 * Largest PDU taken from a peer. We offer 256 KiB for P-DATA (the library's default); an association
 * request with every storage class proposed is a few tens of KiB.
 */
const MAX_PDU_BYTES = 1 << 20;

/**
 * Most bytes of command fragments (and of data fragments that belong to no C-STORE) the library may
 * buffer for one message. It collects them in memory without a limit of its own; a command is a few
 * hundred bytes, and no other operation this SCP serves carries a data set.
 */
const MAX_MESSAGE_BUFFER_BYTES = 1 << 20;

/** How long a closing socket may take to send its last PDU (A-ABORT) before it is destroyed. */
const HANG_UP_GRACE_MS = 2000;

const P_DATA_TF = 0x04;

/**
 * Where the association stands, as far as an acceptor needs PS3.8 9.2's states: `awaiting` (Sta2) until an
 * A-ASSOCIATE-RQ, `deciding` (Sta3) until it is answered, `accepted` (Sta6), `releasing` from an
 * A-RELEASE-RQ (Sta8, then Sta13 once answered), `rejected` (Sta13), `aborted`.
 */
type AssociationState = 'awaiting' | 'deciding' | 'accepted' | 'releasing' | 'rejected' | 'aborted';

/** The PDU types (PS3.8 9.3.1) a peer may send in each state; an A-ABORT (07H) always. */
const EXPECTED_PDUS: Record<AssociationState, ReadonlySet<number>> = {
  awaiting: new Set([0x01, 0x07]),
  deciding: new Set([0x07]),
  accepted: new Set([P_DATA_TF, 0x05, 0x07]),
  releasing: new Set([0x07]),
  rejected: new Set([0x07]),
  aborted: new Set(),
};
const PDU_TYPES = new Set([0x01, 0x02, 0x03, P_DATA_TF, 0x05, 0x06, 0x07]);

/** What the PDU reader reports, before the library reads the bytes. */
interface PduEvents {
  /** The first byte of a PDU arrived. */
  begun(): void;
  /** Its header was read: false refuses it (the socket is destroyed). */
  header(type: number, length: number): boolean;
  /** Its last byte arrived. */
  ended(type: number): void;
}

/**
 * Follows the PDU boundaries in what the peer sends (the listener is prepended, so it sees each chunk
 * before the library does). Returns whether a PDU is part-way in.
 */
function watchPdus(socket: Socket, events: PduEvents): () => boolean {
  let header = Buffer.alloc(0);
  let remaining = 0;
  let type = 0;
  socket.prependListener('data', (chunk: Buffer) => {
    let offset = 0;
    while (offset < chunk.length) {
      if (remaining > 0) {
        const skipped = Math.min(remaining, chunk.length - offset);
        remaining -= skipped;
        offset += skipped;
        if (remaining === 0) events.ended(type);
        continue;
      }
      if (header.length === 0) events.begun();
      const taken = Math.min(6 - header.length, chunk.length - offset);
      header = Buffer.concat([header, chunk.subarray(offset, offset + taken)]);
      offset += taken;
      if (header.length < 6) return;
      type = header[0];
      remaining = header.readUInt32BE(2);
      header = Buffer.alloc(0);
      if (!events.header(type, remaining)) {
        socket.destroy();
        return;
      }
      if (remaining === 0) events.ended(type);
    }
  });
  return () => header.length > 0 || remaining > 0;
}

/**
 * Hands over the connection's first PDU (at most its first 64 KiB) before the library reads it: the
 * listener is prepended, so it has the bytes when the library's 'associationRequested' fires.
 */
function captureFirstPdu(socket: Socket, done: (pdu: Buffer) => void): void {
  let bytes = Buffer.alloc(0);
  const take = (chunk: Buffer): void => {
    bytes = Buffer.concat([bytes, chunk]);
    const whole = bytes.length >= 6 ? Math.min(6 + bytes.readUInt32BE(2), 65536) : Infinity;
    if (bytes.length < whole) return;
    socket.removeListener('data', take);
    done(bytes.subarray(0, whole));
  };
  socket.prependListener('data', take);
}

/**
 * Collects a data set as its fragments arrive, up to a limit and while the upload budget has room; past
 * either, drops them (the answer is a failure). What it holds counts against the budget until `release`.
 */
class DatasetSink extends Writable {
  readonly chunks: Buffer[] = [];
  readonly startedAt = performance.now();
  size = 0;
  dropped?: DatasetDropped;
  private held = 0;

  constructor(
    private readonly limit: number,
    private readonly budget: ByteBudget,
  ) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.size += chunk.length;
    if (!this.dropped) {
      if (this.size > this.limit) this.dropped = 'BODY_TOO_LARGE';
      else if (!this.budget.take(chunk.length, this.held)) this.dropped = 'UPLOADS_BUSY';
      if (this.dropped) {
        this.chunks.length = 0;
        this.release();
      } else {
        this.held += chunk.length;
        this.chunks.push(chunk);
      }
    }
    done();
  }

  /** Gives its bytes back to the budget (once; later calls do nothing). */
  release(): void {
    this.budget.release(this.held);
    this.held = 0;
  }
}

/** Carries the raw bytes to cStoreRequest: the library's own Dataset would parse (and could log) them. */
class ReceivedDataset extends Dataset {
  constructor(
    readonly bytes: Buffer | undefined,
    transferSyntaxUid: string,
    readonly abstractSyntaxUid: string,
    readonly sink: DatasetSink,
  ) {
    super({}, transferSyntaxUid);
  }
}

/**
 * One DIMSE association (dcmjs-dimse calls the overridden methods). The library hands each C-STORE
 * a callback that sends the response whenever it is called, so the answer waits for analysis and
 * the audit commit without blocking the socket; nothing thrown here may reach the library.
 */
export class DimseConnection extends Scp {
  readonly peer: string;
  private callingAeTitle = '';
  /** The first PDU's bytes (the A-ASSOCIATE-RQ, up to 64 KiB): what the library does not read of it. */
  private associateRequest: Buffer = Buffer.alloc(0);
  private readonly inFlight = new Set<Promise<void>>();
  /** The PDUs read so far, one after another: settles once the last one is read (its message handed over). */
  private reading: Promise<void> = Promise.resolve();
  /** Data sets still arriving: a connection that closes before their C-STORE gives their bytes back. */
  private readonly arriving = new Set<DatasetSink>();

  /** An association was accepted on it: it counts toward the SCP's limit until it closes. */
  associated = false;
  private state: AssociationState = 'awaiting';
  /** ARTIM: running until the A-ASSOCIATE-RQ is whole, and again once a rejection or release is sent. */
  private artim?: NodeJS.Timeout;
  /** Running from the first byte of a PDU until that PDU, or the DIMSE message it carries part of, is whole. */
  private receiving?: NodeJS.Timeout;
  /** A P-DATA-TF has come whose message the library has not yet handed over. */
  private messageOpen = false;
  /** Bytes of the current message the library buffers in memory (all but a C-STORE's data set). */
  private bufferedBytes = 0;
  /** The presentation context of the message being received: that of its first PDV. */
  private messageContext?: number;
  private readonly midPdu: () => boolean;
  /** Whether the library's hand-over of each message is hooked (messageReceived). */
  private readonly tracksMessages: boolean;

  constructor(
    private readonly peerSocket: Socket,
    private readonly timeouts: ConnectionTimeouts,
    private readonly handler: DimseHandler,
  ) {
    super(peerSocket, {
      connectTimeout: timeouts.idleMs,
      // Our own ARTIM closes first; the library's check (whole seconds) stays as a backstop.
      associationTimeout: 2 * timeouts.artimMs,
      pduTimeout: timeouts.idleMs,
      logCommandDatasets: false,
      logDatasets: false,
    });
    this.peer = (peerSocket.remoteAddress ?? '').replace(/^::ffff:/, '');
    // The library reports protocol and socket errors here and leaves the socket open: close it.
    this.on('networkError', (error: Error) => {
      this.hangUp();
      handler.connectionError(this.peer, error.message);
    });
    peerSocket.once('close', () => {
      clearTimeout(this.artim);
      clearTimeout(this.receiving);
      for (const sink of this.arriving) sink.release();
      this.arriving.clear();
    });
    captureFirstPdu(peerSocket, (pdu) => (this.associateRequest = pdu));
    this.midPdu = watchPdus(peerSocket, {
      begun: () => this.receiving ?? this.startReceiving(),
      header: (_type, length) => {
        if (length <= MAX_PDU_BYTES) return true;
        handler.connectionError(this.peer, `PDU of ${length} bytes refused (at most ${MAX_PDU_BYTES})`);
        return false;
      },
      ended: (type) => {
        // A P-DATA-TF may be one fragment of a message: its bound runs until the library hands the message over.
        if (type === P_DATA_TF && this.tracksMessages) this.messageOpen = true;
        else if (!this.messageOpen) this.stopReceiving();
      },
    });
    // What the library's Server does for an accepted socket (no 'connect' event fires): arms its timeouts.
    Object.assign(this, { connected: true, connectedTime: Date.now() });
    this.startArtim('no A-ASSOCIATE-RQ');
    // Without the hooks (an upgraded library) the bound falls back to each PDU: never to cutting off a message in progress.
    this.tracksMessages = this.guardProtocol();
  }

  /** PS3.8 9.1.5: when ARTIM expires the transport is closed, with no A-ABORT (none is associated, or it is over). */
  private startArtim(what: string): void {
    clearTimeout(this.artim);
    this.artim = setTimeout(() => {
      this.handler.connectionError(this.peer, `${what} within ${this.timeouts.artimMs} ms (ARTIM): closed`);
      this.peerSocket.destroy();
    }, this.timeouts.artimMs);
  }

  private startReceiving(): void {
    this.receiving = setTimeout(() => {
      this.handler.connectionError(
        this.peer,
        `PDU or DIMSE message not whole ${this.timeouts.receiveMs} ms after its first byte: aborted`,
      );
      if (this.associated) this.sendAbort(AbortSource.ServiceProvider, AbortReason.NotSpecified);
      this.hangUp();
    }, this.timeouts.receiveMs);
  }

  private stopReceiving(): void {
    clearTimeout(this.receiving);
    this.receiving = undefined;
  }

  /** The library handed over a whole message (or it was aborted): the bound starts again with the next PDU. */
  private messageReceived(): void {
    this.messageOpen = false;
    this.bufferedBytes = 0;
    this.messageContext = undefined;
    this.stopReceiving();
    if (this.midPdu()) this.startReceiving();
  }

  /** Reports a failure reading a PDU (a bug: the library catches its own) and ends the connection. */
  private failed(error: unknown): void {
    this.handler.connectionError(this.peer, `PDU not read: ${error instanceof Error ? error.message : String(error)}`);
    this.hangUp();
  }

  /** Ends the connection; a peer that does not close its side in turn (or reads nothing) is cut off. */
  private hangUp(): void {
    if (this.peerSocket.destroyed) return;
    this.peerSocket.end();
    setTimeout(() => this.peerSocket.destroy(), HANG_UP_GRACE_MS).unref();
  }

  /**
   * Hooks the library where it reads PDUs and messages; false when the hooks cannot be set.
   *
   * It reads every PDU whatever the association's state: a P-DATA-TF after an A-ASSOCIATE-RJ or an
   * A-RELEASE-RQ was stored and answered. Each PDU is now judged against the state first (PS3.8 9.2,
   * Table 9-10): one not expected there is answered with A-ABORT (service provider, unexpected PDU; a
   * type PS3.8 does not define, unrecognized PDU) and the connection closed, before the library reads it.
   *
   * It starts on each PDU as it arrives, without waiting for the one before: a P-DATA-TF that waits for its
   * data set's stream to drain was still being read when the A-RELEASE-RQ behind it was answered, so the
   * A-RELEASE-RP left before that C-STORE's response, which could then find the connection closed. Each PDU
   * is now read, and judged, once the one before it has been: an A-RELEASE-RQ only once every message before
   * it was handed over, and `settled` waits for their answers.
   *
   * A P-DATA-TF with no PDV (PS3.8 9.3.5 requires one or more), or with a PDV on a presentation context
   * that was not accepted, is answered with A-ABORT (invalid PDU parameter value).
   *
   * The library takes each PDV on the presentation context the PDV names: a C-STORE-RQ on Verification's
   * context whose data set came on a US image context was judged by the data set's context, analysed, kept
   * and answered success. PS3.8 E.1 puts every fragment of a message on one presentation context; one on
   * another context than its message's first is answered with A-ABORT (invalid PDU parameter value) before
   * the library reads it, as DCMTK's storescp aborts the association for DIMSEC_INVALIDPRESENTATIONCONTEXTID
   * (no C-STORE-RSP, nothing stored). The library is handed one PDV at a time, so each is checked against its
   * own message (it also stopped at a command without a data set, dropping the PDVs after it in that PDU).
   *
   * The library hands a decoded command to its per-command events and drops, without a word, one whose
   * command field it does not know: a garbled command (its decoder keeps what it read before the
   * break) or an operation no DIMSE service defines. When such a command says a data set follows (or
   * does not say), it waits for that data set first. Either way the peer would wait for an answer
   * until the connection's timeout. Such a command is answered with A-ABORT (service provider,
   * invalid PDU parameter value) as soon as it is read, the reason is reported, and the connection closed.
   * The same hook tells the receive bound that a message is whole.
   */
  private guardProtocol(): boolean {
    type Command = { getCommandFieldType(): number | undefined };
    type PDataTf = {
      getPdvs(): Array<{ getValue(): Buffer; isCommand(): boolean; getPresentationContextId(): number }>;
    };
    const internals = this as unknown as {
      dimse?: Command;
      _processPdu(data: Buffer): unknown;
      _performDimse(context: unknown, dimse: Command): void;
      _processPDataTf(pdu: PDataTf): Promise<void>;
    };
    // Internals of the library: should an upgrade rename them, it keeps its own behaviour (the
    // integration tests of these aborts fail) rather than every connection failing.
    if (
      typeof internals._processPdu !== 'function' ||
      typeof internals._performDimse !== 'function' ||
      typeof internals._processPDataTf !== 'function'
    ) {
      return false;
    }
    const processPdu = internals._processPdu.bind(this);
    const read = async (data: Buffer): Promise<void> => {
      if (EXPECTED_PDUS[this.state].has(data[0])) await processPdu(data);
      else this.abortUnexpected(data[0]);
    };
    internals._processPdu = (data) => {
      // The library catches its own errors; should anything else throw, the connection ends (no later PDU is read).
      this.reading = this.reading.then(() => read(data)).catch((error: unknown) => this.failed(error));
      return this.reading;
    };
    const known = (dimse: Command): boolean => KNOWN_COMMAND_FIELDS.has(dimse.getCommandFieldType() ?? -1);
    const perform = internals._performDimse.bind(this);
    internals._performDimse = (context, dimse) => {
      this.messageReceived();
      if (known(dimse)) perform(context, dimse);
      else this.abortUnknown(dimse);
    };
    const processPData = internals._processPDataTf.bind(this);
    internals._processPDataTf = async (pdu) => {
      const pdvs = pdu.getPdvs();
      if (pdvs.length === 0) return this.abortInvalid('P-DATA-TF without a PDV: aborted');
      const unaccepted = pdvs.find((pdv) => !this.acceptedContext(pdv.getPresentationContextId()));
      if (unaccepted) {
        return this.abortInvalid(
          `PDV on presentation context ${unaccepted.getPresentationContextId()}, which was not accepted: aborted`,
        );
      }
      // What is not a C-STORE's data set (which the sink bounds) the library keeps in memory, unbounded.
      const storing = internals.dimse?.getCommandFieldType() === COMMAND_FIELDS.CStoreRequest;
      for (const pdv of pdvs) {
        if (pdv.isCommand() || !storing) this.bufferedBytes += pdv.getValue().length;
      }
      if (this.bufferedBytes > MAX_MESSAGE_BUFFER_BYTES) return this.abortOversized();
      for (const pdv of pdvs) {
        const context = pdv.getPresentationContextId();
        this.messageContext ??= context;
        if (context !== this.messageContext) {
          return this.abortInvalid(
            `PDV on presentation context ${context} in a message on presentation context ${this.messageContext}: aborted`,
          );
        }
        await processPData({ getPdvs: () => [pdv] });
        // Aborted, or ended on the library's error: nothing more is read.
        if (this.state === 'aborted' || this.peerSocket.destroyed || this.peerSocket.writableEnded) return;
        // A command read, its data set awaited.
        if (internals.dimse && !known(internals.dimse)) return this.abortUnknown(internals.dimse);
      }
    };
    return true;
  }

  /** Whether presentation context `id` was proposed and accepted on this association. */
  private acceptedContext(id: number): boolean {
    // Set by the library when it reads the A-ASSOCIATE-RQ; its typings leave it out.
    const { association: current } = this as unknown as { association?: association.Association };
    const proposed = current?.getPresentationContexts().find((c) => c.id === id);
    return proposed?.context.getResult() === PresentationContextResult.Accept;
  }

  /** A PDU its state does not expect (PS3.8 Table 9-10: AA-1, AA-7, AA-8), before the library reads it. */
  private abortUnexpected(type: number): void {
    const name = PDU_TYPES.has(type) ? `PDU type 0x${hex(type, 2)}` : `unknown PDU type 0x${hex(type, 2)}`;
    this.abortConnection(
      `${name} unexpected while the association is ${this.state}: aborted`,
      PDU_TYPES.has(type) ? AbortReason.UnexpectedPdu : AbortReason.UnrecognizedPdu,
    );
  }

  private abortOversized(): void {
    this.abortInvalid(
      `more than ${MAX_MESSAGE_BUFFER_BYTES} bytes of DIMSE command, or of data set fragments without a C-STORE: aborted`,
    );
  }

  private abortUnknown(dimse: { getCommandFieldType(): number | undefined }): void {
    const field = dimse.getCommandFieldType();
    this.abortInvalid(
      field === undefined
        ? 'DIMSE command without a readable command field (0000,0100): aborted'
        : `DIMSE command field 0x${hex(field, 4)} is no DIMSE operation: aborted`,
    );
  }

  /** Reports why, answers A-ABORT (service provider, invalid PDU parameter value) and closes; once per connection. */
  private abortInvalid(message: string): void {
    this.abortConnection(message, AbortReason.InvalidPduParameter);
  }

  /**
   * Reports why, answers A-ABORT (service provider, `reason`) and closes; once per connection. The PDU is
   * written here: the library's sendAbort sends nothing before an A-ASSOCIATE-RQ was read.
   */
  private abortConnection(message: string, reason: number): void {
    const open = this.state !== 'aborted' && !this.peerSocket.destroyed && !this.peerSocket.writableEnded;
    this.state = 'aborted';
    if (!open) return;
    this.handler.connectionError(this.peer, message);
    this.peerSocket.write(Buffer.from([0x07, 0, 0, 0, 0, 4, 0, 0, AbortSource.ServiceProvider, reason]));
    this.hangUp();
  }

  /** Closes the socket, whatever is in progress (shutdown, after the grace period). */
  end(): void {
    this.peerSocket.destroy();
  }

  /** Settles when every PDU received is read and every C-STORE in progress has been answered. */
  async settled(): Promise<void> {
    await this.reading;
    await Promise.allSettled([...this.inFlight]);
  }

  override associationRequested(proposal: association.Association): void {
    // Only the first A-ASSOCIATE-RQ gets here once the PDUs are judged; without the hooks, any.
    if (this.state !== 'awaiting') return this.abortUnexpected(0x01);
    this.state = 'deciding';
    clearTimeout(this.artim);
    this.callingAeTitle = printable(proposal.getCallingAeTitle());
    const protocol = judgeAssociateProtocol(readAssociateProtocol(this.associateRequest));
    void this.handler.admit(printable(proposal.getCalledAeTitle()), this.callingAeTitle, this.peer, protocol).then(
      (refusal) => (refusal ? this.refuse(refusal) : this.accept(proposal)),
      () => this.refuse('UNEXPECTED'),
    );
  }

  override associationReleaseRequested(): void {
    if (this.state !== 'accepted') return this.abortUnexpected(0x05);
    // Nothing more is read from it (the PDUs are judged): only an A-ABORT, or the transport closing.
    this.state = 'releasing';
    // An SCU waits for its answers before releasing; should one not, the release waits for them (PS3.8 7.2:
    // the A-RELEASE-RP follows every response), and ARTIM only starts once they are sent.
    void this.settled().then(() => {
      if (this.state !== 'releasing') return;
      this.sendAssociationReleaseResponse();
      this.startArtim('transport not closed after A-RELEASE-RP');
    });
  }

  override abort(): void {
    // After an A-ABORT the acceptor closes the transport (PS3.8 7.3); the peer waits for that, not for us.
    // A C-STORE in progress still completes and is audited; its answer goes nowhere.
    this.state = 'aborted';
    this.peerSocket.destroy();
  }

  override cEchoRequest(request: requests.CEchoRequest, callback: (response: responses.CEchoResponse) => void): void {
    if (!this.associated)
      return this.abortConnection('C-ECHO-RQ without an association: aborted', AbortReason.UnexpectedPdu);
    const response = responses.CEchoResponse.fromRequest(request);
    response.setStatus(Status.Success);
    callback(response);
  }

  override cStoreRequest(
    request: requests.CStoreRequest,
    callback: (response: responses.CStoreResponse) => void,
  ): void {
    // The PDUs are judged before the library reads them; this holds should its hooks be gone.
    if (!this.associated)
      return this.abortConnection('C-STORE-RQ without an association: aborted', AbortReason.UnexpectedPdu);
    const task = this.answer(request, callback);
    this.inFlight.add(task);
    void task.finally(() => this.inFlight.delete(task));
  }

  override createStoreWritableStream(): Writable {
    const sink = new DatasetSink(this.handler.maxDatasetBytes, this.handler.uploads);
    if (this.peerSocket.destroyed) sink.release();
    else this.arriving.add(sink);
    return sink;
  }

  override createDatasetFromStoreWritableStream(
    writable: Writable,
    context: association.PresentationContext,
    callback: (dataset: Dataset) => void,
  ): void {
    const sink = writable as DatasetSink;
    // From here its C-STORE's answer gives its bytes back.
    this.arriving.delete(sink);
    const bytes = sink.dropped ? undefined : Buffer.concat(sink.chunks);
    sink.chunks.length = 0;
    callback(
      new ReceivedDataset(bytes, context.getAcceptedTransferSyntaxUid() ?? '', context.getAbstractSyntaxUid(), sink),
    );
  }

  private async answer(
    request: requests.CStoreRequest,
    callback: (response: responses.CStoreResponse) => void,
  ): Promise<void> {
    let answer: StoreAnswer;
    const dataset = request.getDataset();
    // The library hands over a C-STORE-RQ that says no data set follows (0000,0800 0101H) as it is.
    const received = dataset instanceof ReceivedDataset ? dataset : undefined;
    try {
      answer = await this.handler.store({
        callingAeTitle: this.callingAeTitle,
        peer: this.peer,
        sopClassUid: request.getAffectedSopClassUid() ?? '',
        sopInstanceUid: request.getAffectedSopInstanceUid() ?? '',
        transferSyntaxUid: received?.getTransferSyntaxUid() ?? '',
        abstractSyntaxUid: received?.abstractSyntaxUid ?? '',
        dataset: received?.bytes,
        ...(received ? (received.sink.dropped ? { dropped: received.sink.dropped } : {}) : { dropped: 'NO_DATASET' }),
        startedAt: received?.sink.startedAt ?? performance.now(),
      });
    } catch {
      answer = { status: Status.ProcessingFailure, comment: 'processing failure' };
    } finally {
      received?.sink.release();
    }
    try {
      const response = responses.CStoreResponse.fromRequest(request);
      response.setStatus(answer.status);
      if (answer.comment) response.setErrorComment(answer.comment);
      callback(response);
    } catch {
      // The library reports a failed send as a network error, which ends the connection.
    }
  }

  private accept(proposal: association.Association): void {
    // Aborted while it was decided (a PDU that had to wait for the answer came first).
    if (this.state !== 'deciding') return;
    // One operation at a time per association: bounds what a caller holds in memory.
    proposal.setMaxAsyncOpsInvoked(1);
    proposal.setMaxAsyncOpsPerformed(1);
    for (const { context } of proposal.getPresentationContexts()) {
      const verdict = judgePresentationContext(context.getAbstractSyntaxUid(), context.getTransferSyntaxUids());
      if (verdict.accept) context.setResult(PresentationContextResult.Accept, verdict.transferSyntaxUid);
      else if (verdict.reason === 'abstract-syntax-not-supported') {
        context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
      } else context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
    }
    this.sendAssociationAccept();
    this.associated = true;
    this.state = 'accepted';
  }

  private refuse(refusal: AssociationRefusal | 'UNEXPECTED'): void {
    if (this.state !== 'deciding') return;
    this.state = 'rejected';
    const [result, source, reason] = REJECTIONS[refusal];
    this.sendAssociationReject(result, source, reason);
    this.startArtim('transport not closed after A-ASSOCIATE-RJ');
  }
}

function hex(value: number, digits: number): string {
  return value.toString(16).padStart(digits, '0');
}

/** AE titles go to logs and audit rows: the default repertoire only (PostgreSQL refuses NUL). */
function printable(aeTitle: string): string {
  return aeTitle.replace(/[^ -~]/g, '?').trim();
}

/** A-ASSOCIATE-RJ result, source and reason for each refusal (PS3.8 9.3.4). */
const REJECTIONS: Record<AssociationRefusal | 'UNEXPECTED', [number, number, number]> = {
  CALLED_AE_NOT_RECOGNIZED: [RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CalledAeNotRecognized],
  CALLING_AE_NOT_ALLOWED: [RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CallingAeNotRecognized],
  TOO_MANY_ASSOCIATIONS: [
    RejectResult.Transient,
    RejectSource.ServiceProviderPresentation,
    RejectReason.LocalLimitExceeded,
  ],
  PROTOCOL_VERSION_NOT_SUPPORTED: [
    RejectResult.Permanent,
    RejectSource.ServiceProviderAcse,
    RejectReason.ProtocolVersionNotSupported,
  ],
  APPLICATION_CONTEXT_NOT_SUPPORTED: [
    RejectResult.Permanent,
    RejectSource.ServiceUser,
    RejectReason.ApplicationContextNotSupported,
  ],
  UNEXPECTED: [RejectResult.Transient, RejectSource.ServiceUser, RejectReason.NoReasonGiven],
};
