/** The gateway's own implementation, named in its file meta and association answers (as the SR's file meta). */
export const IMPLEMENTATION_CLASS_UID = '2.25.63768102400915240157087566270395696861';
export const IMPLEMENTATION_VERSION_NAME = 'RIG_DIMSE_1';

export interface FileMeta {
  sopClassUid: string;
  sopInstanceUid: string;
  /** The presentation context's transfer syntax: the data set bytes are in it. */
  transferSyntaxUid: string;
  /** The calling AE title, as (0002,0016) Source Application Entity Title. */
  sourceAeTitle?: string;
}

/**
 * A DICOM Part 10 file around a data set received by C-STORE: preamble, `DICM`, the file meta group
 * (always explicit VR little endian, PS3.10 7.1) and the data set bytes exactly as they came. Nothing
 * is decoded or re-encoded, so the bytes analysed and digested are the bytes the modality sent.
 */
export function part10File(dataset: Buffer, meta: FileMeta): Buffer {
  const elements = [
    element(0x0001, 'OB', Buffer.from([0, 1])),
    element(0x0002, 'UI', uid(meta.sopClassUid)),
    element(0x0003, 'UI', uid(meta.sopInstanceUid)),
    element(0x0010, 'UI', uid(meta.transferSyntaxUid)),
    element(0x0012, 'UI', uid(IMPLEMENTATION_CLASS_UID)),
    element(0x0013, 'SH', text(IMPLEMENTATION_VERSION_NAME, 16)),
    ...(meta.sourceAeTitle ? [element(0x0016, 'AE', text(meta.sourceAeTitle, 16))] : []),
  ];
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(elements.reduce((n, e) => n + e.length, 0));
  return Buffer.concat([
    Buffer.alloc(128),
    Buffer.from('DICM', 'latin1'),
    element(0x0000, 'UL', groupLength),
    ...elements,
    dataset,
  ]);
}

/** One explicit VR little endian element of group 0002; OB has the long (4-byte) length form. */
function element(tag: number, vr: 'OB' | 'UI' | 'SH' | 'AE' | 'UL', value: Buffer): Buffer {
  const long = vr === 'OB';
  const header = Buffer.alloc(long ? 12 : 8);
  header.writeUInt16LE(0x0002, 0);
  header.writeUInt16LE(tag, 2);
  header.write(vr, 4, 'latin1');
  if (long) header.writeUInt32LE(value.length, 8);
  else header.writeUInt16LE(value.length, 6);
  return Buffer.concat([header, value]);
}

/** UI: the command's UID as sent (it is not trusted here: the parser reads the data set's own), NUL-padded to even. */
function uid(value: string): Buffer {
  return pad(Buffer.from(value.replace(/[^0-9.]/g, '').slice(0, 64), 'latin1'), 0);
}

function text(value: string, max: number): Buffer {
  return pad(
    Buffer.from(
      value
        .replace(/[^ -~]/g, '?')
        .replace(/\\/g, '/')
        .slice(0, max),
      'latin1',
    ),
    0x20,
  );
}

function pad(bytes: Buffer, filler: number): Buffer {
  return bytes.length % 2 ? Buffer.concat([bytes, Buffer.from([filler])]) : bytes;
}
