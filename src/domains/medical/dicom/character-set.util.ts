/**
 * (0008,0005) Specific Character Set (PS3.3 C.12.1.1.2, PS3.5 6.1): how a data set's patient and study text is
 * decoded, so that the SR copies names as the modality wrote them. Pure; WHATWG encodings through TextDecoder.
 */
import { TextDecoder } from 'node:util';

/** A decoder of one element's bytes. */
export type TextDecode = (bytes: Uint8Array) => string;

/** Single-byte and multi-byte character sets without code extensions, as WHATWG encoding labels. */
const CHARACTER_SETS: Readonly<Record<string, string>> = {
  'ISO_IR 100': 'latin1',
  'ISO_IR 101': 'iso-8859-2',
  'ISO_IR 109': 'iso-8859-3',
  'ISO_IR 110': 'iso-8859-4',
  'ISO_IR 144': 'iso-8859-5',
  'ISO_IR 127': 'iso-8859-6',
  'ISO_IR 126': 'iso-8859-7',
  'ISO_IR 138': 'iso-8859-8',
  'ISO_IR 148': 'iso-8859-9',
  'ISO_IR 203': 'iso-8859-15',
  'ISO_IR 166': 'windows-874',
  'ISO_IR 13': 'shift_jis',
  'ISO_IR 192': 'utf-8',
  GB18030: 'gb18030',
  GBK: 'gbk',
};

/** What G0 (bytes below 0x80) holds: ASCII, JIS X 0201 romaji (ASCII here), or a JIS double-byte set. */
type G0 = 'ascii' | 'jis-x-0208' | 'jis-x-0212';

/**
 * What G1 (bytes from 0x80) holds, as a WHATWG label; undefined for none. Korean KS X 1001 and Chinese GB 2312 are
 * designated to G1, so their bytes are those of EUC-KR and EUC-CN (read by the GBK decoder).
 */
type G1 = string;

/** The defined terms with code extensions (PS3.3 Table C.12-3 and C.12-4), by the sets each designates. */
const ISO_2022_TERMS: Readonly<Record<string, { g0?: G0; g1?: G1 }>> = {
  'ISO 2022 IR 6': {},
  'ISO 2022 IR 100': { g1: 'latin1' },
  'ISO 2022 IR 101': { g1: 'iso-8859-2' },
  'ISO 2022 IR 109': { g1: 'iso-8859-3' },
  'ISO 2022 IR 110': { g1: 'iso-8859-4' },
  'ISO 2022 IR 144': { g1: 'iso-8859-5' },
  'ISO 2022 IR 127': { g1: 'iso-8859-6' },
  'ISO 2022 IR 126': { g1: 'iso-8859-7' },
  'ISO 2022 IR 138': { g1: 'iso-8859-8' },
  'ISO 2022 IR 148': { g1: 'iso-8859-9' },
  'ISO 2022 IR 203': { g1: 'iso-8859-15' },
  'ISO 2022 IR 166': { g1: 'windows-874' },
  'ISO 2022 IR 13': { g1: 'shift_jis' },
  'ISO 2022 IR 87': { g0: 'jis-x-0208' },
  'ISO 2022 IR 159': { g0: 'jis-x-0212' },
  'ISO 2022 IR 149': { g1: 'euc-kr' },
  'ISO 2022 IR 58': { g1: 'gbk' },
};

/** The escape sequences of those sets (PS3.5 Tables 6.1-2, 6.1-3), the bytes after ESC. */
const ESCAPES: ReadonlyArray<[string, { g0?: G0; g1?: G1 }]> = [
  ['(B', { g0: 'ascii' }],
  ['(J', { g0: 'ascii' }],
  ['$B', { g0: 'jis-x-0208' }],
  ['$@', { g0: 'jis-x-0208' }],
  ['$(D', { g0: 'jis-x-0212' }],
  [')I', { g1: 'shift_jis' }],
  ['$)C', { g1: 'euc-kr' }],
  ['$)A', { g1: 'gbk' }],
  ['-A', { g1: 'latin1' }],
  ['-B', { g1: 'iso-8859-2' }],
  ['-C', { g1: 'iso-8859-3' }],
  ['-D', { g1: 'iso-8859-4' }],
  ['-L', { g1: 'iso-8859-5' }],
  ['-G', { g1: 'iso-8859-6' }],
  ['-F', { g1: 'iso-8859-7' }],
  ['-H', { g1: 'iso-8859-8' }],
  ['-M', { g1: 'iso-8859-9' }],
  ['-b', { g1: 'iso-8859-15' }],
  ['-T', { g1: 'windows-874' }],
];

const ESC = 0x1b;

/**
 * A decoder for text in the declared character set, or undefined where dicom-parser's latin1 reading is already
 * right (none declared, ISO_IR 100, or a term it does not know) or a Node without the encoding leaves nothing better.
 * Code extensions (`\ISO 2022 IR 87`, `ISO 2022 IR 13\ISO 2022 IR 87`, `\ISO 2022 IR 149`, `ISO 2022 IR 144`) are
 * read by their escape sequences: they were read as bytes, and the SR left every Japanese, Korean or Chinese name
 * of such a modality empty, and a Cyrillic `ISO 2022 IR 144` name in Latin-1.
 */
export function textDecoderFor(declared: string | undefined): TextDecode | undefined {
  const terms = (declared ?? '').split('\\').map((term) => term.trim());
  try {
    if (terms.length === 1 && !terms[0].startsWith('ISO 2022')) {
      const label = CHARACTER_SETS[terms[0]];
      if (!label || label === 'latin1') return undefined;
      const decoder = new TextDecoder(label);
      return (bytes) => decoder.decode(bytes);
    }
    // Code extensions: every value a term with them; the first (empty: ISO 2022 IR 6) is in force at the start.
    if (!terms.every((term) => term === '' || Object.hasOwn(ISO_2022_TERMS, term))) return undefined;
    const initial = ISO_2022_TERMS[terms[0] || 'ISO 2022 IR 6'];
    const decoders = new Map<string, TextDecoder>();
    const decoderOf = (label: string): TextDecoder => {
      let decoder = decoders.get(label);
      if (!decoder) decoders.set(label, (decoder = new TextDecoder(label)));
      return decoder;
    };
    // Made once here, so that a Node without one of them falls back (catch below) rather than fail a request.
    for (const label of ['euc-jp', 'euc-kr', 'gbk', 'shift_jis']) decoderOf(label);
    return (bytes) => decodeIso2022(bytes, initial, decoderOf);
  } catch {
    return undefined; // a Node without this encoding: read as bytes, as before
  }
}

/**
 * ISO 2022 text (PS3.5 6.1.2.5): each run between escape sequences is decoded in the sets they designate. JIS X 0208
 * and 0212 in G0 are decoded as EUC-JP (their bytes with the high bit set, 0212's after 0x8F), G1's sets as their
 * own encodings. An escape sequence it does not know is kept, so the text holds a control character and the SR
 * leaves it empty rather than write it wrongly.
 */
function decodeIso2022(
  bytes: Uint8Array,
  initial: { g0?: G0; g1?: G1 },
  decoderOf: (label: string) => TextDecoder,
): string {
  let g0: G0 = initial.g0 ?? 'ascii';
  let g1: G1 | undefined = initial.g1;
  let text = '';
  let at = 0;
  while (at < bytes.length) {
    if (bytes[at] === ESC) {
      const escape = ESCAPES.find(([sequence]) => matches(bytes, at + 1, sequence));
      if (!escape) {
        text += '\u001b';
        at++;
        continue;
      }
      g0 = escape[1].g0 ?? g0;
      g1 = escape[1].g1 ?? g1;
      at += 1 + escape[0].length;
      continue;
    }
    let end = at;
    while (end < bytes.length && bytes[end] !== ESC) end++;
    text += decodeRun(bytes.subarray(at, end), g0, g1, decoderOf);
    at = end;
  }
  return text;
}

/** One run of bytes under the same designations: G0 bytes (below 0x80) and G1 bytes (from 0x80), as they come. */
function decodeRun(run: Uint8Array, g0: G0, g1: G1 | undefined, decoderOf: (label: string) => TextDecoder): string {
  let text = '';
  let at = 0;
  while (at < run.length) {
    const high = run[at] >= 0x80;
    let end = at;
    while (end < run.length && run[end] >= 0x80 === high) end++;
    const piece = run.subarray(at, end);
    if (high) text += decoderOf(g1 ?? 'latin1').decode(piece);
    else if (g0 === 'ascii') text += Buffer.from(piece).toString('latin1');
    else text += decodeJis(piece, g0, decoderOf('euc-jp'));
    at = end;
  }
  return text;
}

/** JIS X 0208 / 0212 bytes in G0, by pairs, as EUC-JP; a control byte (a line break) passes as it is. */
function decodeJis(piece: Uint8Array, g0: 'jis-x-0208' | 'jis-x-0212', eucJp: TextDecoder): string {
  const euc: number[] = [];
  for (let i = 0; i < piece.length; i++) {
    if (piece[i] < 0x21 || piece[i] > 0x7e || i + 1 === piece.length) {
      euc.push(piece[i]);
      continue;
    }
    if (g0 === 'jis-x-0212') euc.push(0x8f);
    euc.push(piece[i] | 0x80, piece[++i] | 0x80);
  }
  return eucJp.decode(Uint8Array.from(euc));
}

function matches(bytes: Uint8Array, at: number, sequence: string): boolean {
  for (let i = 0; i < sequence.length; i++) if (bytes[at + i] !== sequence.charCodeAt(i)) return false;
  return true;
}
