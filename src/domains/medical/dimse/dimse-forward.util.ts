import { data, log as dcmjsLog, type Logger } from 'dcmjs';
import { association, Client, constants, Dataset, requests, responses } from 'dcmjs-dimse';
import type { ForwardTarget } from './dimse-negotiation.util';

export interface ForwardTimeouts {
  /** Connect, associate and each PDU. */
  stepMs: number;
  /** The whole exchange. */
  totalMs: number;
}

/**
 * Sends the file's own data set bytes, so the SR that leaves is byte for byte the one built. Its
 * elements are there too for the one case the library re-encodes: a peer that takes the context
 * in another transfer syntax than the file's.
 */
class EncodedDataset extends Dataset {
  constructor(
    elements: Record<string, unknown>,
    transferSyntaxUid: string,
    private readonly encoded: Buffer,
  ) {
    super(elements, transferSyntaxUid);
  }

  override getDenaturalizedDataset(): Buffer {
    return this.encoded;
  }
}

/** A Part 10 file as a dcmjs-dimse data set: the bytes after its file meta group, plus their elements. */
export function datasetOfPart10(file: Buffer): Dataset {
  // Preamble (128) + DICM (4) + the group length element (12), whose value is the rest of the file meta.
  if (file.toString('latin1', 128, 132) !== 'DICM' || file.readUInt32LE(132) !== 0x00000002) {
    throw new Error('not a Part 10 file that starts its file meta with the group length');
  }
  const start = 144 + file.readUInt32LE(140);
  const parsed = quietly(() => {
    const dict = data.DicomMessage.readFile(
      file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer,
    );
    return {
      meta: data.DicomMetaDictionary.naturalizeDataset(dict.meta),
      elements: data.DicomMetaDictionary.naturalizeDataset(dict.dict),
    };
  });
  return new EncodedDataset(parsed.elements, String(parsed.meta.TransferSyntaxUID), file.subarray(start));
}

/**
 * One C-STORE of one data set to `target` on its own association; resolves with the peer's status,
 * rejects when there was none (refused association, presentation context, network, timeout).
 * Messages name the step that failed, never the data set.
 */
export function cStoreTo(
  dataset: Dataset,
  target: ForwardTarget,
  callingAeTitle: string,
  timeouts: ForwardTimeouts,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const client = new Client();
    const request = new requests.CStoreRequest(dataset);
    let status: number | undefined;
    let failure: string | undefined;
    const finish = (): void => {
      clearTimeout(timer);
      if (status !== undefined) resolve(status);
      else reject(new Error(failure ?? 'no C-STORE response (presentation context not accepted)'));
    };
    const timer = setTimeout(() => {
      failure = `no answer within ${timeouts.totalMs} ms`;
      try {
        client.abort();
      } catch {
        // Not connected yet: nothing to abort.
      }
      finish();
    }, timeouts.totalMs);
    request.on('response', (response: responses.CStoreResponse) => {
      status = response.getStatus();
    });
    client.on('associationRejected', (r: { result: number; source: number; reason: number }) => {
      failure ??= `association rejected (result ${r.result}, source ${r.source}, reason ${r.reason})`;
    });
    // The library cuts the data set to the peer's maximum PDU length but sends the command whole, and loops
    // for ever on a maximum of 6 bytes or less: a destination that cannot take the command in one PDU gets none.
    client.on('associationAccepted', (accepted: association.Association) => {
      const max = accepted.getMaxPduLength();
      const needed = request.getCommandDataset().getDenaturalizedCommandDataset().length + 6;
      if (max === 0 || max >= needed) return;
      failure = `destination's maximum PDU length ${max} is below the ${needed} bytes of the command: not sent`;
      client.clearRequests();
      client.abort(constants.AbortSource.ServiceUser, constants.AbortReason.NotSpecified);
    });
    client.on('networkError', (error: Error) => {
      failure ??= `network: ${error.message.replace(/[0-9]+(\.[0-9]+){4,}/g, '<uid>')}`;
    });
    client.on('closed', finish);
    client.addRequest(request);
    client.send(target.host, target.port, callingAeTitle, target.aeTitle, {
      connectTimeout: timeouts.stepMs,
      associationTimeout: timeouts.stepMs,
      pduTimeout: timeouts.stepMs,
    });
  });
}

/** dcmjs logs through a process-wide loglevel and some messages quote element values (patient data). */
function quietly<T>(read: () => T): T {
  const loggers: Logger[] = [dcmjsLog, dcmjsLog.getLogger('validation.dcmjs')];
  const levels = loggers.map((logger) => logger.getLevel());
  loggers.forEach((logger) => logger.setLevel('silent', false));
  try {
    return read();
  } finally {
    loggers.forEach((logger, i) => logger.setLevel(levels[i], false));
  }
}
